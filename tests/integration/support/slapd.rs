//! A private OpenLDAP server (Debian's slapd) on 127.0.0.1 with the
//! openssh-lpk schema, its own slapd.conf, database and port; entries are
//! loaded offline with slapadd before it starts. The packaged instance is
//! never touched.
//!
//! Two bind accounts with a size limit of 50 entries: `cn=reader` may page
//! past it (`size.prtotal=unlimited`), `cn=capped` may not read more than
//! 100 entries in all, paged or not. With `tls`, a private CA (openssl)
//! signs a certificate for 127.0.0.1 and slapd also listens on ldaps://.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{free_port, must, wait_port, write_file, TestDir};

pub const BASE: &str = "dc=example,dc=com";
pub const PEOPLE: &str = "ou=people,dc=example,dc=com";
pub const READER: &str = "cn=reader,dc=example,dc=com";
pub const READER_PW: &str = "reader pw";
pub const CAPPED: &str = "cn=capped,dc=example,dc=com";
pub const CAPPED_PW: &str = "capped pw";

/// The openssh-lpk schema (the OIDs SSSD's tests use too).
const LPK_SCHEMA: &str = "attributetype ( 1.3.6.1.4.1.24552.500.1.1.1.13 NAME 'sshPublicKey'
\tDESC 'OpenSSH public key' EQUALITY octetStringMatch
\tSYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
objectclass ( 1.3.6.1.4.1.24552.500.1.1.2.0 NAME 'ldapPublicKey' SUP top AUXILIARY
\tDESC 'OpenSSH LPK objectclass' MAY ( sshPublicKey $ uid ) )
";

/// One person entry: `uid=NAME,ou=people` (or under `ou`), with key values.
pub struct Person<'a> {
    pub uid: &'a str,
    pub ou: Option<&'a str>,
    pub keys: Vec<String>,
}

impl Person<'_> {
    pub fn ldif(&self) -> String {
        let parent = match self.ou {
            Some(ou) => format!("ou={ou},{PEOPLE}"),
            None => PEOPLE.to_owned(),
        };
        let mut s = format!(
            "dn: uid={},{parent}\nobjectClass: account\nobjectClass: ldapPublicKey\nuid: {}\n",
            self.uid, self.uid
        );
        for k in &self.keys {
            s.push_str(&format!("sshPublicKey: {k}\n"));
        }
        s.push('\n');
        s
    }
}

pub struct Slapd {
    pub dir: TestDir,
    pub port: u16,
    /// ldaps:// port when started with TLS.
    pub tls_port: Option<u16>,
    /// The private CA's certificate (PEM), with TLS.
    pub ca: Option<PathBuf>,
    pid_file: PathBuf,
}

impl Slapd {
    /// Starts slapd with the base entries, the two bind accounts, the
    /// `ou=people` branch, any `extra_ous` under it, and `people`.
    pub fn start(people: &[Person], extra_ous: &[&str], tls: bool) -> Slapd {
        let dir = TestDir::new("slapd");
        let schema = dir.write("lpk.schema", LPK_SCHEMA, 0o644);
        let db = dir.subdir("db");
        let pid_file = dir.join("slapd.pid");
        let port = free_port();
        let tls_port = tls.then(free_port);
        let mut conf = format!(
            "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
include {schema}
pidfile {pid}
modulepath /usr/lib/ldap
moduleload back_mdb
",
            schema = schema.display(),
            pid = pid_file.display(),
        );
        let ca = tls.then(|| make_tls(&dir, &mut conf));
        conf.push_str(&format!(
            "database mdb
maxsize 104857600
suffix \"{BASE}\"
rootdn \"cn=admin,{BASE}\"
rootpw admin-secret
directory {db}
limits dn.exact=\"{READER}\" size.soft=50 size.hard=50 size.prtotal=unlimited
limits dn.exact=\"{CAPPED}\" size.soft=50 size.hard=50 size.prtotal=100
access to attrs=userPassword by anonymous auth by * none
access to * by * read
",
            db = db.display()
        ));
        let conf_path = dir.write("slapd.conf", conf, 0o644);
        let mut ldif = format!(
            "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: example\ndc: example\n\n"
        );
        for (dn, pw) in [(READER, READER_PW), (CAPPED, CAPPED_PW)] {
            let cn = dn.split(',').next().unwrap().trim_start_matches("cn=");
            ldif.push_str(&format!(
                "dn: {dn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: {cn}\nuserPassword: {pw}\n\n"
            ));
        }
        ldif.push_str(&format!(
            "dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n"
        ));
        for ou in extra_ous {
            ldif.push_str(&format!(
                "dn: ou={ou},{PEOPLE}\nobjectClass: organizationalUnit\nou: {ou}\n\n"
            ));
        }
        for p in people {
            ldif.push_str(&p.ldif());
        }
        let data = dir.write("data.ldif", ldif, 0o644);
        must(
            Command::new("slapadd")
                .args(["-q", "-f"])
                .arg(&conf_path)
                .arg("-l")
                .arg(&data),
        );
        let mut urls = format!("ldap://127.0.0.1:{port}/");
        if let Some(p) = tls_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
        }
        must(
            Command::new("slapd")
                .arg("-f")
                .arg(&conf_path)
                .args(["-h", &urls]),
        );
        let s = Slapd {
            dir,
            port,
            tls_port,
            ca,
            pid_file,
        };
        assert!(
            wait_port(port, Duration::from_secs(10)),
            "slapd did not listen on {port}"
        );
        s
    }

    /// `ldap://127.0.0.1:PORT/ou=people,dc=example,dc=com??sub?FILTER`.
    pub fn url(&self, filter: &str) -> String {
        format!("ldap://127.0.0.1:{}/{PEOPLE}??sub?{filter}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!(
            "ldaps://127.0.0.1:{}/{PEOPLE}??sub?",
            self.tls_port.expect("started with tls")
        )
    }

    /// A bind password file (owner-only) in the test directory.
    pub fn password_file(&self, name: &str, password: &str) -> PathBuf {
        self.dir.write(name, format!("{password}\n"), 0o600)
    }

    pub fn stop(&self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: a plain kill(2) of the slapd this helper started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                super::wait_until(Duration::from_secs(10), || {
                    // SAFETY: signal 0 only probes whether the pid exists.
                    unsafe { libc::kill(pid, 0) != 0 }
                });
            }
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private CA and a server certificate for 127.0.0.1 (openssl); adds
/// slapd's TLS lines to `conf` and returns the CA certificate's path.
fn make_tls(dir: &TestDir, conf: &mut String) -> PathBuf {
    let p = |f: &str| dir.join(f);
    let ext = dir.write(
        "server.ext",
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        0o644,
    );
    must(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=keyward test CA",
            ])
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.pem")),
    );
    must(
        Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr")),
    );
    must(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(p("ca.pem"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(p("server.pem")),
    );
    conf.push_str(&format!(
        "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
        p("ca.pem").display(),
        p("server.pem").display(),
        p("server.key").display()
    ));
    write_file(
        &p("server.key"),
        std::fs::read(p("server.key")).unwrap(),
        0o600,
    );
    p("ca.pem")
}

/// Whether slapd and ldapsearch are installed (scripts/test.sh installs them).
pub fn available() -> bool {
    Path::new("/usr/sbin/slapd").exists() && Path::new("/usr/bin/ldapsearch").exists()
}
