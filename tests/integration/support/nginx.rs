//! A private nginx serving a directory: the key directory of the tests.
//!
//! Single process (`daemon off; master_process off;`), its own config, pid,
//! error and access log, `listen 127.0.0.1:PORT`, `etag on`. The access log
//! records status, method, URI and the `If-None-Match` request header, so a
//! test can prove that no request was made, or that a conditional one was.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::{free_port, lock, wait_port, write_file, TestDir};

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub status: u16,
    pub method: String,
    /// The request URI as sent (`$request_uri`, still percent-encoded).
    pub uri: String,
    /// The `If-None-Match` header, when the client sent one.
    pub if_none_match: Option<String>,
}

/// Builder: extra `location` blocks before start.
#[derive(Default)]
pub struct NginxBuilder {
    locations: Vec<String>,
    server_lines: Vec<String>,
}

impl NginxBuilder {
    /// Adds a raw `location` block to the server, e.g.
    /// `location = /users/err.keys { return 500; }`.
    pub fn location(mut self, block: &str) -> Self {
        self.locations.push(block.to_owned());
        self
    }

    /// Adds a raw directive inside `server { }`.
    pub fn server_line(mut self, line: &str) -> Self {
        self.server_lines.push(line.to_owned());
        self
    }

    pub fn start(self) -> Nginx {
        let mut last = String::new();
        // A port can be taken between the check and nginx's bind: retry.
        for _ in 0..3 {
            match self.try_start() {
                Ok(n) => return n,
                Err(e) => last = e,
            }
        }
        panic!("nginx did not start: {last}");
    }

    fn try_start(&self) -> Result<Nginx, String> {
        let dir = TestDir::new("nginx");
        let root = dir.subdir("www");
        let tmp = dir.subdir("tmp");
        let port = free_port();
        let conf = dir.join("nginx.conf");
        let access_log = dir.join("access.log");
        let error_log = dir.join("error.log");
        let pid = dir.join("nginx.pid");
        let text = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {pid};
error_log {error_log} info;
events {{ worker_connections 128; }}
http {{
    default_type text/plain;
    log_format keyward_tests '$status $request_method $request_uri inm="$http_if_none_match"';
    access_log {access_log} keyward_tests;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    etag on;
    sendfile off;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {root};
{server_lines}
{locations}
        location / {{ }}
    }}
}}
"#,
            pid = pid.display(),
            error_log = error_log.display(),
            access_log = access_log.display(),
            tmp = tmp.display(),
            root = root.display(),
            server_lines = self
                .server_lines
                .iter()
                .map(|l| format!("        {l}\n"))
                .collect::<String>(),
            locations = self
                .locations
                .iter()
                .map(|l| format!("        {l}\n"))
                .collect::<String>(),
        );
        fs::write(&conf, text).unwrap();
        let prefix = format!("{}/", dir.path().display());
        let test = super::run(
            Command::new("nginx")
                .arg("-t")
                .arg("-q")
                .arg("-c")
                .arg(&conf)
                .arg("-p")
                .arg(&prefix)
                .arg("-e")
                .arg(&error_log),
            Duration::from_secs(30),
        );
        assert!(test.success(), "nginx -t: {test}");
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx {
            port,
            root,
            access_log,
            error_log,
            child: Some(child),
            last_mtime: Mutex::new(SystemTime::UNIX_EPOCH),
            dir,
        };
        let up = super::wait_until(Duration::from_secs(10), || {
            let exited = nginx
                .child
                .as_mut()
                .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            exited || wait_port(port, Duration::from_millis(100))
        });
        let running = nginx
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if !up || !running {
            let err = fs::read_to_string(&nginx.error_log).unwrap_or_default();
            nginx.stop();
            return Err(format!("port {port}: {err}"));
        }
        Ok(nginx)
    }
}

/// A running private nginx; stopped on drop.
pub struct Nginx {
    pub port: u16,
    /// The document root (`www/` in its test directory).
    pub root: PathBuf,
    pub access_log: PathBuf,
    pub error_log: PathBuf,
    child: Option<Child>,
    last_mtime: Mutex<SystemTime>,
    dir: TestDir,
}

impl Nginx {
    /// An nginx serving an empty document root.
    pub fn start() -> Nginx {
        NginxBuilder::default().start()
    }

    pub fn builder() -> NginxBuilder {
        NginxBuilder::default()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The usual key directory template: `http://127.0.0.1:PORT/users/{user}.keys`.
    pub fn users_url(&self) -> String {
        self.url("/users/{user}.keys")
    }

    /// Writes a file under the document root (0644). The file's mtime is
    /// made strictly newer than any earlier `put`, so nginx's ETag
    /// (mtime-size) changes even when a rewrite keeps the same size.
    pub fn put(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.root.join(rel.trim_start_matches('/'));
        write_file(&path, contents, 0o644);
        let mut last = lock(&self.last_mtime);
        let now = SystemTime::now();
        let next = (*last + Duration::from_secs(1)).max(now);
        let f = fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(next).unwrap();
        *last = next;
        path
    }

    /// `put("users/USER.keys", contents)`.
    pub fn put_keys(&self, user: &str, contents: &str) -> PathBuf {
        self.put(&format!("users/{user}.keys"), contents)
    }

    /// Removes a file under the document root (later requests get 404).
    pub fn remove(&self, rel: &str) {
        let _ = fs::remove_file(self.root.join(rel.trim_start_matches('/')));
    }

    pub fn remove_keys(&self, user: &str) {
        self.remove(&format!("users/{user}.keys"));
    }

    /// Every access log line so far, parsed.
    pub fn accesses(&self) -> Vec<Access> {
        let text = fs::read_to_string(&self.access_log).unwrap_or_default();
        text.lines().filter_map(parse_access).collect()
    }

    /// Accesses whose URI contains `needle` (e.g. a user name).
    pub fn accesses_for(&self, needle: &str) -> Vec<Access> {
        self.accesses()
            .into_iter()
            .filter(|a| a.uri.contains(needle))
            .collect()
    }

    /// Number of requests whose URI contains `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.accesses_for(needle).len()
    }

    /// Total number of requests served.
    pub fn total(&self) -> usize {
        self.accesses().len()
    }

    pub fn error_log_text(&self) -> String {
        fs::read_to_string(&self.error_log).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn parse_access(line: &str) -> Option<Access> {
    let (status, rest) = line.split_once(' ')?;
    let (method, rest) = rest.split_once(' ')?;
    let (uri, rest) = rest.rsplit_once(" inm=\"")?;
    let inm = rest.strip_suffix('"')?;
    Some(Access {
        status: status.parse().ok()?,
        method: method.to_owned(),
        uri: uri.to_owned(),
        // nginx logs an absent header as "-".
        if_none_match: match inm {
            "-" | "" => None,
            v => Some(v.replace("\\x22", "\"")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_parse() {
        let a = parse_access(r#"304 GET /users/al%20x.keys inm="\x2265f0-5a\x22""#).unwrap();
        assert_eq!(a.status, 304);
        assert_eq!(a.uri, "/users/al%20x.keys");
        assert_eq!(a.if_none_match.as_deref(), Some("\"65f0-5a\""));
        let b = parse_access(r#"200 GET /users/a.keys inm="-""#).unwrap();
        assert_eq!(b.if_none_match, None);
    }
}
