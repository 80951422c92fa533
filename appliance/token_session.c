/*
 * What mfactl's token and export commands share; see token_priv.h. A
 * passphrase is read from a file the operator made (first line) or typed on
 * the controlling terminal with echo off; it never comes from argv or the
 * environment, and every buffer that held it is wiped.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "errmsg.h"
#include "secrets.h"
#include "token_priv.h"

int tok_fail(const char *cmd, int rc, char **err)
{
    fprintf(stderr, "mfactl %s: %s\n", cmd, *err ? *err : "failed");
    free(*err);
    *err = NULL;
    return rc;
}

int tok_open(struct tok_session *s, const char *config, enum dbconn_want want, const char *what,
             char **err)
{
    int rc;

    if (appconf_load(config, &s->conf, NULL, NULL, err) < 0)
        return DBCONN_EXIT_USAGE;
    s->conf_loaded = true;
    if (keyfile_load(s->conf.appliance.key_file, &s->keys, err) < 0) {
        err_prefix(err, "the key file (run this as root on a member)");
        return DBCONN_EXIT_USAGE;
    }
    rc = dbconn_find(config, want, NULL, &s->target, err);
    if (rc != DBCONN_EXIT_OK)
        return rc;
    s->conn = dbconn_open(&s->conf, &s->keys, &s->target, what, err);
    return s->conn ? DBCONN_EXIT_OK : DBCONN_EXIT_NOBODY;
}

void tok_close(struct tok_session *s)
{
    PQfinish(s->conn);
    s->conn = NULL;
    keyring_wipe(&s->keys);
    if (s->conf_loaded)
        appconf_free(&s->conf);
    s->conf_loaded = false;
}

/* The first line of <file> into <out>; the rest of the file is not read. */
static int passphrase_from_file(const char *file, char *out, char **err)
{
    char line[TOKEN_PASSPHRASE_MAX + 3]; /* the passphrase, CR LF, NUL */
    FILE *f = fopen(file, "re");
    size_t len;
    int rc = 0;

    if (!f)
        return err_set(err, "cannot read %s: %s", file, strerror(errno));
    if (!fgets(line, sizeof(line), f))
        line[0] = '\0';
    fclose(f);
    len = strcspn(line, "\r\n");
    if (len > TOKEN_PASSPHRASE_MAX)
        rc = err_set(err, "the passphrase in %s is longer than %d bytes", file,
                     TOKEN_PASSPHRASE_MAX);
    else
        snprintf(out, TOKEN_PASSPHRASE_MAX + 1, "%.*s", (int)len, line);
    secret_wipe(line, sizeof(line));
    return rc;
}

/* The terminal's settings while echo is off, for a signal to put back. */
static struct termios echo_saved;
static volatile sig_atomic_t echo_fd = -1;

/*
 * Ctrl-C (or a kill) at the prompt: echo back on, then die of the signal as
 * if there were no handler, so the shell gets its terminal as it was.
 */
static void echo_restore(int sig)
{
    if (echo_fd >= 0)
        tcsetattr(echo_fd, TCSANOW, &echo_saved);
    signal(sig, SIG_DFL);
    raise(sig);
}

static const int echo_signals[] = { SIGINT, SIGTERM, SIGQUIT, SIGHUP };

/* Installs echo_restore for echo_signals (the old actions into <old>) or puts them back. */
static void echo_guard(bool on, struct sigaction *old)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = echo_restore;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(echo_signals) / sizeof(echo_signals[0]); i++) {
        if (on)
            sigaction(echo_signals[i], &sa, &old[i]);
        else
            sigaction(echo_signals[i], &old[i], NULL);
    }
}

/* One line typed on <fd> (the terminal) with echo off. */
static int passphrase_typed(int fd, const char *prompt, char *out, char **err)
{
    struct sigaction old_actions[sizeof(echo_signals) / sizeof(echo_signals[0])];
    struct termios old, quiet;
    size_t len = 0;
    char ch;
    ssize_t n;

    if (tcgetattr(fd, &old) < 0)
        return err_set(err, "cannot set up the terminal: %s", strerror(errno));
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    echo_saved = old;
    echo_fd = fd;
    echo_guard(true, old_actions);
    if (tcsetattr(fd, TCSAFLUSH, &quiet) < 0) {
        echo_guard(false, old_actions);
        echo_fd = -1;
        return err_set(err, "cannot turn the terminal's echo off: %s", strerror(errno));
    }
    if (write(fd, prompt, strlen(prompt)) < 0) {
        /* the prompt is a courtesy; the reading below decides */
    }
    while ((n = read(fd, &ch, 1)) == 1 && ch != '\n') {
        if (len < TOKEN_PASSPHRASE_MAX)
            out[len] = ch;
        len++;
    }
    ch = 0;
    tcsetattr(fd, TCSAFLUSH, &old);
    echo_guard(false, old_actions);
    echo_fd = -1;
    if (write(fd, "\n", 1) < 0) {
        /* as above */
    }
    if (len > TOKEN_PASSPHRASE_MAX) {
        secret_wipe(out, TOKEN_PASSPHRASE_MAX + 1);
        return err_set(err, "the passphrase is longer than %d bytes", TOKEN_PASSPHRASE_MAX);
    }
    out[len] = '\0';
    if (n < 0)
        return err_set(err, "reading the passphrase: %s", strerror(errno));
    return 0;
}

static int passphrase_from_tty(bool confirm, char *out, char **err)
{
    char again[TOKEN_PASSPHRASE_MAX + 1];
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC), rc;

    if (fd < 0)
        return err_set(err, "no terminal to ask for the passphrase on: give --passphrase-file");
    rc = passphrase_typed(fd, "passphrase: ", out, err);
    if (rc == 0 && confirm && *out) {
        rc = passphrase_typed(fd, "the passphrase again: ", again, err);
        if (rc == 0 && strcmp(out, again) != 0)
            rc = err_set(err, "the two passphrases differ");
        secret_wipe(again, sizeof(again));
    }
    close(fd);
    return rc;
}

int tok_passphrase(const char *file, bool confirm, size_t min, char *out, char **err)
{
    int rc = file ? passphrase_from_file(file, out, err) : passphrase_from_tty(confirm, out, err);

    if (rc == 0 && !*out)
        rc = err_set(err, "the passphrase is empty%s%s", file ? " in " : "", file ? file : "");
    else if (rc == 0 && strlen(out) < min)
        rc = err_set(err, "the passphrase must be at least %zu characters", min);
    if (rc < 0)
        secret_wipe(out, TOKEN_PASSPHRASE_MAX + 1);
    return rc;
}
