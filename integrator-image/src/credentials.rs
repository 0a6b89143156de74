//! Git credentials from the mounted Secret: an https token (basic auth as
//! `x-access-token`), or an ssh private key with the `known_hosts` the server's host
//! key is checked against. Unknown ssh hosts are refused. Nothing here is ever logged.

use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::error::{Error, Result};

/// User name sent with an https token (GitHub, Gitea and GitLab accept it).
pub const TOKEN_USER: &str = "x-access-token";

/// Credentials read from a directory holding `token`, `ssh-privatekey` and
/// `known_hosts` (each optional).
#[derive(Clone, Default)]
pub struct Credentials {
    token: Option<String>,
    ssh_key: Option<PathBuf>,
    known_hosts: Option<KnownHosts>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ssh_key", &self.ssh_key)
            .field(
                "known_hosts",
                &self.known_hosts.as_ref().map(|k| k.entries.len()),
            )
            .finish()
    }
}

impl Credentials {
    /// No credentials: anonymous access (file://, git://, public https).
    pub fn none() -> Self {
        Credentials::default()
    }

    /// Reads the credentials in `dir`; a missing directory means none.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| -> Result<Option<String>> {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
                    Error::Credentials(format!("{} is not UTF-8 text", path.display()))
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::Credentials(format!(
                    "cannot read {}: {}",
                    path.display(),
                    e.kind()
                ))),
            }
        };
        let token = read("token")?
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        let key_path = dir.join("ssh-privatekey");
        let ssh_key = key_path.is_file().then_some(key_path);
        let known_hosts = read("known_hosts")?.map(|text| KnownHosts::parse(&text));
        Ok(Credentials {
            token,
            ssh_key,
            known_hosts,
        })
    }

    /// Replaces the token, wherever it appears in `text`, with `***`.
    pub fn redact(&self, text: &str) -> String {
        let text = redact_url_userinfo(text);
        match &self.token {
            Some(token) if token.len() >= 4 => text.replace(token.as_str(), "***"),
            _ => text,
        }
    }

    /// Callbacks answering libgit2's credential and host-key questions for `url`.
    pub fn callbacks<'a>(&'a self, url: &str) -> RemoteCallbacks<'a> {
        let mut callbacks = RemoteCallbacks::new();
        let tries = Cell::new(0u32);
        let (host, port) = host_and_port(url);
        callbacks.credentials(move |_url, username, allowed| {
            // libgit2 asks again after a refused attempt; a second refusal is final.
            tries.set(tries.get() + 1);
            if tries.get() > 2 {
                return Err(git2::Error::from_str(
                    "authentication failed with the configured credentials",
                ));
            }
            if allowed.contains(CredentialType::SSH_KEY) {
                if let Some(key) = &self.ssh_key {
                    return Cred::ssh_key(username.unwrap_or("git"), None, key, None);
                }
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                if let Some(token) = &self.token {
                    return Cred::userpass_plaintext(TOKEN_USER, token);
                }
            }
            if allowed.contains(CredentialType::USERNAME) {
                return Cred::username(username.unwrap_or("git"));
            }
            Err(git2::Error::from_str(
                "the remote asks for credentials and none are configured (set the run's credentialsSecret)",
            ))
        });
        callbacks.certificate_check(move |cert, _host| {
            let Some(hostkey) = cert.as_hostkey() else {
                // TLS: keep libgit2's (OpenSSL's) verdict.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let (Some(key), Some(kind)) = (hostkey.hostkey(), hostkey.hostkey_type()) else {
                return Err(git2::Error::from_str(
                    "the ssh server sent no usable host key",
                ));
            };
            let Some(known) = &self.known_hosts else {
                return Err(git2::Error::from_str(
                    "ssh host key cannot be checked: no known_hosts in the credentials; refusing an unknown host",
                ));
            };
            match known.check(&host, port, kind.name(), key) {
                HostCheck::Match => Ok(CertificateCheckStatus::CertificateOk),
                HostCheck::Mismatch => Err(git2::Error::from_str(
                    "ssh host key does not match known_hosts: refusing the host",
                )),
                HostCheck::Revoked => Err(git2::Error::from_str(
                    "ssh host key is revoked in known_hosts: refusing the host",
                )),
                HostCheck::Unknown => Err(git2::Error::from_str(
                    "ssh host is not in known_hosts: refusing an unknown host",
                )),
            }
        });
        callbacks
    }
}

/// `url` with any password in its user-info part replaced by `***`.
pub fn redact_url(url: &str) -> String {
    redact_url_userinfo(url)
}

/// Redacts `scheme://user:secret@` forms anywhere in `text`.
fn redact_url_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at_sign) => {
                let userinfo = &authority[..at_sign];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at_sign..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Host and port of an ssh URL (`ssh://user@host:port/path` or `user@host:path`).
fn host_and_port(url: &str) -> (String, u16) {
    if let Some(rest) = url.strip_prefix("ssh://") {
        let authority = rest.split('/').next().unwrap_or_default();
        let hostport = authority.rsplit('@').next().unwrap_or_default();
        if let Some(inner) = hostport.strip_prefix('[') {
            // [ipv6]:port
            let (host, after) = inner.split_once(']').unwrap_or((inner, ""));
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host.to_owned(), port.unwrap_or(22));
        }
        return match hostport.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(22)),
            None => (hostport.to_owned(), 22),
        };
    }
    // scp-like: user@host:path
    let before_colon = url.split(':').next().unwrap_or_default();
    let host = before_colon.rsplit('@').next().unwrap_or_default();
    (host.to_owned(), 22)
}

/// Result of looking a host key up in known_hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCheck {
    /// An entry for the host carries this key.
    Match,
    /// The host is listed, with other keys only.
    Mismatch,
    /// The key is marked `@revoked`.
    Revoked,
    /// The host is not listed.
    Unknown,
}

#[derive(Debug, Clone)]
struct KnownHost {
    revoked: bool,
    patterns: Vec<String>,
    key_type: String,
    key: Vec<u8>,
}

/// A parsed `known_hosts` file (plain and hashed host names, wildcards, negations,
/// `@revoked`; `@cert-authority` lines are ignored).
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<KnownHost>,
}

impl KnownHosts {
    /// Parses a known_hosts file; malformed lines are skipped.
    pub fn parse(text: &str) -> Self {
        let mut entries = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let mut first = fields.next().unwrap_or_default();
            let mut revoked = false;
            if first.starts_with('@') {
                match first {
                    "@revoked" => revoked = true,
                    _ => continue,
                }
                first = fields.next().unwrap_or_default();
            }
            let (Some(key_type), Some(key_b64)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Ok(key) = base64::engine::general_purpose::STANDARD.decode(key_b64) else {
                continue;
            };
            entries.push(KnownHost {
                revoked,
                patterns: first.split(',').map(str::to_owned).collect(),
                key_type: key_type.to_owned(),
                key,
            });
        }
        KnownHosts { entries }
    }

    /// Checks the key `key` of type `key_type` (e.g. `ssh-ed25519`) offered by `host`
    /// on `port`.
    pub fn check(&self, host: &str, port: u16, key_type: &str, key: &[u8]) -> HostCheck {
        let name = if port == 22 {
            host.to_owned()
        } else {
            format!("[{host}]:{port}")
        };
        let mut listed = false;
        for entry in &self.entries {
            if !host_matches(&entry.patterns, &name) {
                continue;
            }
            if entry.revoked {
                if entry.key == key {
                    return HostCheck::Revoked;
                }
                continue;
            }
            listed = true;
            if entry.key_type == key_type && entry.key == key {
                return HostCheck::Match;
            }
        }
        if listed {
            HostCheck::Mismatch
        } else {
            HostCheck::Unknown
        }
    }
}

fn host_matches(patterns: &[String], name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(negated, name) {
                return false;
            }
        } else if let Some(hashed) = pattern.strip_prefix("|1|") {
            matched |= hashed_match(hashed, name);
        } else {
            matched |= wildcard_match(pattern, name);
        }
    }
    matched
}

/// `|1|salt|hash`: hash = HMAC-SHA1(key = salt, message = host name).
fn hashed_match(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let (Ok(salt), Ok(hash)) = (engine.decode(salt), engine.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// Glob with `*` and `?`, case-insensitive (host names).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &[u8] =
        b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const KEY_B: &[u8] =
        b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn known_hosts_match_plain_port_and_wildcard_entries() {
        let text = format!(
            "# comment\ngit.example.com,10.0.0.1 ssh-ed25519 {}\n[gitea.local]:2222 ssh-ed25519 {}\n*.corp ssh-ed25519 {} c\n",
            b64(KEY_A),
            b64(KEY_B),
            b64(KEY_A)
        );
        let kh = KnownHosts::parse(&text);
        assert_eq!(
            kh.check("git.example.com", 22, "ssh-ed25519", KEY_A),
            HostCheck::Match
        );
        assert_eq!(
            kh.check("git.example.com", 22, "ssh-ed25519", KEY_B),
            HostCheck::Mismatch
        );
        assert_eq!(
            kh.check("gitea.local", 2222, "ssh-ed25519", KEY_B),
            HostCheck::Match
        );
        assert_eq!(
            kh.check("gitea.local", 22, "ssh-ed25519", KEY_B),
            HostCheck::Unknown
        );
        assert_eq!(
            kh.check("a.corp", 22, "ssh-ed25519", KEY_A),
            HostCheck::Match
        );
        assert_eq!(
            kh.check("evil.example.org", 22, "ssh-ed25519", KEY_A),
            HostCheck::Unknown
        );
    }

    #[test]
    fn known_hosts_match_hashed_names_and_honour_revocation() {
        let salt = b"0123456789abcdefghij";
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"git.example.com");
        let hash = mac.finalize().into_bytes();
        let text = format!(
            "|1|{}|{} ssh-ed25519 {}\n@revoked * ssh-ed25519 {}\n",
            b64(salt),
            b64(&hash),
            b64(KEY_A),
            b64(KEY_B)
        );
        let kh = KnownHosts::parse(&text);
        assert_eq!(
            kh.check("git.example.com", 22, "ssh-ed25519", KEY_A),
            HostCheck::Match
        );
        assert_eq!(
            kh.check("other.example.com", 22, "ssh-ed25519", KEY_A),
            HostCheck::Unknown
        );
        assert_eq!(
            kh.check("git.example.com", 22, "ssh-ed25519", KEY_B),
            HostCheck::Revoked
        );
    }

    #[test]
    fn urls_and_tokens_are_redacted() {
        assert_eq!(
            redact_url("https://user:s3cret@host/repo.git"),
            "https://user:***@host/repo.git"
        );
        assert_eq!(
            redact_url("git://127.0.0.1:9418/r"),
            "git://127.0.0.1:9418/r"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "ghp_secretvalue\n").unwrap();
        let creds = Credentials::load(dir.path()).unwrap();
        let text =
            creds.redact("failed to fetch with ghp_secretvalue from https://x:ghp_secretvalue@h/r");
        assert!(!text.contains("ghp_secretvalue"), "{text}");
        assert!(!format!("{creds:?}").contains("ghp_secretvalue"));
    }

    #[test]
    fn ssh_hosts_and_ports_are_parsed() {
        assert_eq!(
            host_and_port("ssh://git@h.example:2222/r.git"),
            ("h.example".into(), 2222)
        );
        assert_eq!(
            host_and_port("ssh://h.example/r.git"),
            ("h.example".into(), 22)
        );
        assert_eq!(
            host_and_port("git@h.example:org/r.git"),
            ("h.example".into(), 22)
        );
        assert_eq!(host_and_port("ssh://[::1]:2200/r"), ("::1".into(), 2200));
    }

    #[test]
    fn missing_directory_means_no_credentials() {
        let creds = Credentials::load(Path::new("/nonexistent/lapidary-creds")).unwrap();
        assert!(creds.token.is_none() && creds.ssh_key.is_none() && creds.known_hosts.is_none());
    }
}
