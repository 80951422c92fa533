/*
 * mfactl: the operator's command line for the appliance cluster.
 *
 * Global options come before the command; the command parses its own. The
 * cluster commands (cluster_cmd.h) speak the replicators' control API with
 * the cluster's TLS, as docs/replication.md describes; drain, ready and
 * maint (server_cmd.h) the balancers' (docs/balancer.md); `pki` (pki.h)
 * makes the certificates those APIs need and reads no configuration file.
 * `keepalived` (keepalived.h) prints a member's keepalived.conf for a floating
 * address in front of the balancers; it reads the configuration only.
 *
 * Exit codes, stable for scripts: 0 done, 1 failed, 2 bad usage or
 * configuration, 3 refused (nothing was changed), 4 no member answered.
 */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "apikey_cmd.h"
#include "appconf.h"
#include "backup_cmd.h"
#include "cluster_cmd.h"
#include "directory.h"
#include "directory_cmd.h"
#include "keepalived.h"
#include "pki.h"
#include "server_cmd.h"
#include "setup.h"
#include "token_cmd.h"
#include "upgrade_cmd.h"

static const char usage_text[] =
    "usage: mfactl [-c FILE] [--json] COMMAND [ARGS]\n"
    "\n"
    "global options:\n"
    "  -c, --config FILE   appliance configuration (default " APPCONF_DEFAULT_PATH ")\n"
    "      --json          status as JSON (progress then goes to stderr)\n"
    "      --version       print the version\n"
    "  -h, --help          this text\n"
    "\n"
    "commands:\n"
    "  status [--json]\n"
    "      every member's role, timeline, LSN, lag, upstream, state and balancer state\n"
    "  switchover --to N [--timeout S]\n"
    "      with the primary alive: fence it, wait until N has replayed its shutdown\n"
    "      checkpoint (S seconds, default 30; else the primary is resumed), promote N,\n"
    "      make the others follow N\n"
    "  failover --to N [--force] [--timeout S]\n"
    "      with the primary gone: check that no data is lost, wait until the old primary\n"
    "      has fenced itself, promote N, make the others follow N (S: extra seconds to\n"
    "      wait for the fence and for the others to stream, default 30). --force skips\n"
    "      the checks and says what may be lost\n"
    "  rejoin M [--to N] [--timeout S]\n"
    "      make member M a standby of N (default: the writable primary) and wait until it\n"
    "      streams (S default 120)\n"
    "  drain N [--wait] [--timeout S]\n"
    "      on every balancer: no new work for N; its own challenges and sessions still\n"
    "      reach it. --wait: then until N's /status shows none live (exit 0), at most S\n"
    "      seconds (default 300; exit 1 with the counts left)\n"
    "  ready N\n"
    "      on every balancer: N takes new work again\n"
    "  maint N\n"
    "      on every balancer: nothing reaches N, not even its own challenges and sessions\n"
    "      (they start again elsewhere)\n"
    "  apikey create NAME [--scope admin|auth]\n"
    "      on the primary's host: make an API key in the database (the first admin key\n"
    "      of a new cluster); printed once\n"
    "  token import FILE [--format csv|pskc] [--passphrase-file F]\n"
    "  token list [--user U] [--unassigned] [--json]\n"
    "  token assign SERIAL USER\n"
    "  token unassign SERIAL\n"
    "      OATH tokens from CSV or PSKC (RFC 6030) seed files, all or nothing, and who\n"
    "      signs in with them; as root on a member (`mfactl token --help`)\n"
    "  export [--users FILE] [--tokens FILE] [--format pskc|csv] [--passphrase-file F]\n"
    "         [--plaintext-seeds]\n"
    "      users (CSV for POST /api/v1/users/import, no PINs) and every token with its\n"
    "      seed (PSKC under a passphrase; CSV in clear only with --plaintext-seeds), for\n"
    "      a migration; files mode 0600, \"-\" for stdout (`mfactl export --help`)\n"
    "  backup FILE [--from MEMBER] [--passphrase-file F]\n"
    "      a consistent snapshot of the database and the key file from the writable\n"
    "      primary (else the most advanced standby, or MEMBER), encrypted under a\n"
    "      passphrase (F's first line, or asked)\n"
    "  restore FILE [--passphrase-file F] [--force] [--no-start] [--wait S]\n"
    "      on a fresh appliance: verify FILE, make this member the primary with its data\n"
    "      and keys (the others then join it); --force: into a live cluster with the same\n"
    "      key file. Refused (exit 3, nothing changed) over a live cluster\n"
    "  directory sync [--dry-run] [--force] [--json]\n"
    "  directory status [--json]\n"
    "      users from LDAP/Active Directory now, on the writable primary (refused, exit 3,\n"
    "      when it would disable too many); the last syncs (`mfactl directory --help`)\n"
    "  upgrade-plan [--json]\n"
    "      the ordered steps of a rolling upgrade for the cluster as it stands\n"
    "  setup --primary --cluster NAME --id ID --address ADDR [--member ID=ADDR]...\n"
    "  setup --invite ID --address ADDR [--out FILE]\n"
    "  setup --join HOST[:PORT] --bundle FILE\n"
    "      first boot of an appliance: create the cluster here, invite a member (on the\n"
    "      CA's host), or join one; safe to run again (`mfactl setup --help`)\n"
    "  pki init|issue|renew ...\n"
    "      the cluster CA and member certificates; renew before they expire\n"
    "      (`mfactl pki --help`)\n"
    "  keepalived --vip ADDRESS/PREFIX --interface IF --router-id N [--priority N]\n"
    "             [--password-file F] [--peers ID,...] [--out FILE]\n"
    "      this member's keepalived.conf for a floating address over the balancer hosts\n"
    "      (docs/install.md). The same VIP, IF and N on every member; N 1..255, unique\n"
    "      among the VRRP groups on the network. --priority: 1..254, default 200 for\n"
    "      the first member, 10 less for each after it; --password-file: VRRP's simple\n"
    "      password (1-8 characters, sent in clear; IPv4 only); --peers: the members\n"
    "      that run keepalived, this one too (default: all); --out: write FILE\n"
    "      atomically, mode 0600, instead of printing it\n"
    "\n"
    "exit codes: 0 done, 1 failed, 2 bad usage or configuration, 3 refused (nothing was\n"
    "changed), 4 no member (for drain, ready, maint: no balancer) answered\n";

struct command {
    const char *name;
    int (*run)(const char *config, bool json, int argc, char **argv);
};

static const struct command commands[] = {
    { "status", cluster_cmd_status },
    { "switchover", cluster_cmd_switchover },
    { "failover", cluster_cmd_failover },
    { "rejoin", cluster_cmd_rejoin },
    { "drain", server_cmd_drain },
    { "ready", server_cmd_ready },
    { "maint", server_cmd_maint },
    { "keepalived", keepalived_cmd },
    { "setup", setup_cmd },
    { "apikey", apikey_cmd },
    { "token", token_cmd },
    { "export", export_cmd },
    { "backup", backup_cmd },
    { "restore", restore_cmd },
    { "upgrade-plan", upgrade_plan_cmd },
    { "directory", directory_cmd },
};

int main(int argc, char **argv)
{
    enum { OPT_VERSION = 256, OPT_JSON };
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "json", no_argument, NULL, OPT_JSON },
        { "version", no_argument, NULL, OPT_VERSION },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *config = APPCONF_DEFAULT_PATH, *name;
    bool json = false;
    int ch;

    signal(SIGPIPE, SIG_IGN);
    directory_lib_init(); /* libldap without ldap.conf, ldaprc or LDAP* variables */
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+:c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_VERSION:
            printf("mfactl %s\n", MFA_VERSION);
            return 0;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case ':':
            fprintf(stderr, "mfactl: %s needs a value; see `mfactl --help`\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "mfactl: unknown option %s; see `mfactl --help`\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind >= argc) {
        fputs(usage_text, stderr);
        return 2;
    }
    name = argv[optind];
    if (strcmp(name, "pki") == 0)
        return pki_main(argc - optind, argv + optind);
    if (strcmp(name, "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    for (size_t i = 0; i < MFA_ARRAY_LEN(commands); i++) {
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].run(config, json, argc - optind, argv + optind);
    }
    fprintf(stderr, "mfactl: unknown command \"%s\"; see `mfactl --help`\n", name);
    return 2;
}
