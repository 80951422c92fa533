"""A real OpenLDAP server (Debian's slapd) for tests, on loopback, with TLS.

    from ldapd import Slapd
    d = Slapd(base_dir)               # starts it; base_dir must exist
    d.add_user("alice", "Alice A", "alice@example.com", "+41 79 123 45 67", "pw")
    d.add_group("vpn", [d.user_dn("alice")])
    cluster = Cluster(..., extra_conf=d.conf_section(user=cluster.user, group_dn=d.group_dn("vpn")))
    ...
    d.stop()

Slapd(base_dir, ca=None, log_level=0) writes everything under <base_dir>/slapd (made
readable by the cluster's unprivileged user: the node reads the CA file and
the password file), makes a test CA when <ca> is None (certs.make_ca: a
(key, crt) pair; pass one to sign with your own), issues a server
certificate for 127.0.0.1 and starts `slapd -d <log_level>` in the foreground
on two free ports: ldap:// (StartTLS offered) and ldaps://. It returns once
the server answers an authenticated search, or raises TimeoutError.
log_level=256 (stats) writes a line per operation to log_path, e.g.
`conn=1004 op=0 BIND dn="uid=ann,ou=people,dc=example,dc=com" method=128`.

The tree: SUFFIX (dc=example,dc=com) with ou=people and ou=groups; the
rootdn ROOT_DN (password ROOT_PW) writes; the service account SYNC_DN
(password SYNC_PW) reads everything but passwords; anybody may bind
(userPassword is "auth" only), so a user's own password check works.

Attributes:
  url_ldaps, url_ldap   the two URLs ("ldaps://127.0.0.1:P", "ldap://127.0.0.1:P")
  ca_file               the CA certificate the server's chains to
  people, groups        "ou=people,dc=example,dc=com", "ou=groups,..."
Methods (all raise subprocess.CalledProcessError with slapd's answer on failure):
  add(ldif), modify(ldif), delete(dn)        ldapadd / ldapmodify / ldapdelete as rootdn
  add_user(uid, cn, mail=None, mobile=None, password=None, ou="people", **attrs) -> dn
      an inetOrgPerson uid=<uid>,ou=<ou>; extra attrs (e.g. telephoneNumber=...) as given;
      an ou other than people/groups is created on first use
  set_attr(dn, attr, value)                  replace (value None: delete the attribute)
  add_group(cn, member_dns) -> dn            a groupOfNames cn=<cn>,ou=groups
  set_members(group_dn, member_dns)          replace the group's members
  search(base, filt="(objectClass=*)")       -> ldapsearch's LDIF text, as rootdn
  user_dn(uid, ou="people"), group_dn(cn)
  conf_section(user=None, password=None, **overrides) -> the `directory = {...};` text
      for Cluster(extra_conf=...): ldaps, ca_file, SYNC_DN and a password file
      (0600, chowned to <user> when root; <password>: a wrong one, in a file of its
      own), base_dn ou=people, filter (objectClass=inetOrgPerson), interval_s 3600,
      max_disable_percent 50, timeout_ms 5000. Overrides replace
      keys (str quoted, bool, int; attributes={...} merges into attributes; None drops a key).
  stop()
"""

import os
import pwd
import signal
import subprocess
import sys

import certs

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "appliance"))
from cluster import free_ports, wait_for  # noqa: E402

SUFFIX = "dc=example,dc=com"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "root-secret-4711"
SYNC_DN = f"cn=sync,{SUFFIX}"
SYNC_PW = "sync-secret-0815"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def slappasswd(secret):
    """The {SSHA} hash of <secret>, as slappasswd makes it."""
    return subprocess.run(["slappasswd", "-s", secret], check=True, capture_output=True,
                          text=True, timeout=30).stdout.strip()


class Slapd:
    def __init__(self, base_dir, ca=None, start=True, log_level=0):
        self.dir = os.path.join(base_dir, "slapd")
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        for d in (base_dir, self.dir):
            os.chmod(d, 0o755)
        self.ca = ca or certs.make_ca(self.dir, "ldap-ca")
        self.ca_file = self.ca[1]
        self.key, self.crt = certs.issue(self.dir, self.ca, "ldap-server", certs.server_ext())
        os.chmod(self.ca_file, 0o644)
        self.port_ldap, self.port_ldaps = free_ports(2)
        self.url_ldap = f"ldap://127.0.0.1:{self.port_ldap}"
        self.url_ldaps = f"ldaps://127.0.0.1:{self.port_ldaps}"
        self.people = f"ou=people,{SUFFIX}"
        self.groups = f"ou=groups,{SUFFIX}"
        self.conf = os.path.join(self.dir, "slapd.conf")
        self.log_level = log_level
        self.proc = None
        self._ous = {"people", "groups"}
        self._write_conf()
        if start:
            self.start()

    # -- the server --

    def _write_conf(self):
        includes = "".join(f"include /etc/ldap/schema/{s}.schema\n" for s in SCHEMAS)
        with open(self.conf, "w") as f:
            f.write(f"""{includes}
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {self.dir}/slapd.pid
argsfile {self.dir}/slapd.args
TLSCACertificateFile {self.ca_file}
TLSCertificateFile {self.crt}
TLSCertificateKeyFile {self.key}

database mdb
maxsize 104857600
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {slappasswd(ROOT_PW)}
directory {self.dir}/data
index objectClass eq
index uid eq
index member eq

access to attrs=userPassword
  by anonymous auth
  by self write
  by * none
access to *
  by dn.exact="{SYNC_DN}" read
  by self read
  by * none
""")

    def start(self, timeout=30):
        self.log_path = os.path.join(self.dir, "slapd.log")
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                ["slapd", "-f", self.conf, "-h", f"{self.url_ldap}/ {self.url_ldaps}/", "-d",
                 str(self.log_level)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

        def answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited {self.proc.returncode}: {self._log_tail()}")
            return self._run(["ldapwhoami", "-x", "-H", self.url_ldaps, "-D", ROOT_DN,
                              "-w", ROOT_PW], check=False).returncode == 0
        try:
            wait_for(answers, timeout, "slapd answers", interval=0.1)
        except TimeoutError:
            self.stop()
            raise TimeoutError(f"slapd did not answer: {self._log_tail()}")
        if not self._exists(SUFFIX):
            self.add(f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: {SYNC_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: sync
userPassword: {slappasswd(SYNC_PW)}

dn: {self.people}
objectClass: organizationalUnit
ou: people

dn: {self.groups}
objectClass: organizationalUnit
ou: groups
""")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    # -- ldap-utils --

    def _env(self):
        return dict(os.environ, LDAPTLS_CACERT=self.ca_file, LDAPTLS_REQCERT="demand",
                    LDAPCONF="/dev/null", LDAPRC="/dev/null")

    def _run(self, args, stdin=None, check=True):
        p = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=30,
                           env=self._env())
        if check and p.returncode != 0:
            raise subprocess.CalledProcessError(p.returncode, args[0], p.stdout, p.stderr)
        return p

    def _root(self, tool, *args, stdin=None, check=True):
        return self._run([tool, "-x", "-H", self.url_ldaps, "-D", ROOT_DN, "-w", ROOT_PW, *args],
                         stdin=stdin, check=check)

    def add(self, ldif):
        self._root("ldapadd", stdin=ldif)

    def modify(self, ldif):
        self._root("ldapmodify", stdin=ldif)

    def delete(self, dn):
        self._root("ldapdelete", dn)

    def search(self, base, filt="(objectClass=*)", *attrs):
        return self._root("ldapsearch", "-LLL", "-b", base, filt, *attrs).stdout

    def _exists(self, dn):
        return self._root("ldapsearch", "-LLL", "-b", dn, "-s", "base", "dn",
                          check=False).returncode == 0

    # -- the tree --

    @staticmethod
    def user_dn(uid, ou="people"):
        return f"uid={uid},ou={ou},{SUFFIX}"

    @staticmethod
    def group_dn(cn):
        return f"cn={cn},ou=groups,{SUFFIX}"

    def _ensure_ou(self, ou):
        if ou not in self._ous:
            if not self._exists(f"ou={ou},{SUFFIX}"):
                self.add(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n")
            self._ous.add(ou)

    def add_user(self, uid, cn, mail=None, mobile=None, password=None, ou="people", **attrs):
        """Adds an inetOrgPerson; <password> is stored as {SSHA}. Returns its DN."""
        self._ensure_ou(ou)
        dn = self.user_dn(uid, ou)
        lines = [f"dn: {dn}", "objectClass: inetOrgPerson", f"uid: {uid}", f"cn: {cn}",
                 f"sn: {cn.split()[-1] if cn.split() else uid}", f"displayName: {cn}"]
        for attr, value in (("mail", mail), ("mobile", mobile), *attrs.items()):
            if value is not None:
                lines.append(f"{attr}: {value}")
        if password is not None:
            lines.append(f"userPassword: {slappasswd(password)}")
        self.add("\n".join(lines) + "\n")
        return dn

    def set_attr(self, dn, attr, value):
        """Replaces <attr> of <dn> with <value>, or deletes it (value None)."""
        if value is None:
            self.modify(f"dn: {dn}\nchangetype: modify\ndelete: {attr}\n")
        else:
            self.modify(f"dn: {dn}\nchangetype: modify\nreplace: {attr}\n{attr}: {value}\n")

    def add_group(self, cn, member_dns):
        """Adds a groupOfNames (it needs one member at least). Returns its DN."""
        dn = self.group_dn(cn)
        self.add(f"dn: {dn}\nobjectClass: groupOfNames\ncn: {cn}\n"
                 + "".join(f"member: {m}\n" for m in member_dns))
        return dn

    def set_members(self, group_dn, member_dns):
        self.modify(f"dn: {group_dn}\nchangetype: modify\nreplace: member\n"
                    + "".join(f"member: {m}\n" for m in member_dns))

    # -- the appliance's side --

    def conf_section(self, user=None, password=None, **overrides):
        """The `directory = {...};` section pointing at this server, for
        Cluster(extra_conf=...). Writes the bind password file (<password>, or
        the right one) 0600, owned by <user> (the cluster's) when root."""
        # Another file for another password: the right one's stays as it is.
        pw_file = os.path.join(self.dir, "bind.pw" if password is None else "bind-other.pw")
        fd = os.open(pw_file + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write((SYNC_PW if password is None else password) + "\n")
        if user and os.geteuid() == 0:
            pw = pwd.getpwnam(user)
            os.chown(pw_file + ".tmp", pw.pw_uid, pw.pw_gid)
        os.replace(pw_file + ".tmp", pw_file)
        keys = {
            "enabled": True, "url": self.url_ldaps, "ca_file": self.ca_file,
            "bind_dn": SYNC_DN, "bind_password_file": pw_file, "base_dn": self.people,
            "filter": "(objectClass=inetOrgPerson)", "interval_s": 3600,
            "max_disable_percent": 50, "timeout_ms": 5000,
        }
        attributes = {"username": "uid", "display_name": "displayName", "email": "mail",
                      "phone": "mobile,telephoneNumber"}
        attributes.update(overrides.pop("attributes", None) or {})
        keys.update(overrides)
        keys["attributes"] = attributes
        return "directory = {\n" + _settings(keys, "  ") + "};\n"


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _settings(keys, indent):
    out = ""
    for k, v in keys.items():
        if v is None:
            continue
        if isinstance(v, dict):
            out += f"{indent}{k} = {{\n{_settings(v, indent + '  ')}{indent}}};\n"
        else:
            out += f"{indent}{k} = {_value(v)};\n"
    return out
