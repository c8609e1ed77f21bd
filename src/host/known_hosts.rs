//! known_hosts files read as OpenSSH reads them (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"):
//! comma-separated host patterns with `*`, `?` and `!` negation, hashed names (`|1|salt|hash`,
//! HMAC-SHA1), and the `@revoked` / `@cert-authority` markers. libssh2's own checker knows
//! neither patterns nor markers, so the verdict is taken here from the raw key blob the server
//! sent; libssh2 only supplies that blob.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use hmac::{Hmac, Mac};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Plain,
    Revoked,
    CertAuthority,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    /// `pattern[,pattern...]`
    Patterns(String),
    /// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// Where an entry came from, for messages (`file:line`, as `ssh` prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, Clone)]
struct Entry {
    origin: Origin,
    marker: Marker,
    hosts: Hosts,
    key_type: String,
    key: Vec<u8>,
}

/// What the files say about the key a server offered under a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A plain entry for the name holds exactly this key.
    Match,
    /// An `@revoked` entry for the name holds this key: never accepted.
    Revoked(Origin),
    /// Entries of this key type exist for the name, none with this key.
    Changed(Origin),
    /// Only an `@cert-authority` entry covers the name: certificates are not supported.
    CertAuthorityOnly(Origin),
    NotFound,
}

#[derive(Debug, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

impl KnownHosts {
    /// Every entry of `files`, in order; a missing file is empty (as for `ssh`), an unreadable
    /// one an error, and a line that is not an entry is skipped (as `ssh` does).
    pub fn load(files: &[PathBuf]) -> Result<KnownHosts> {
        let mut entries = Vec::new();
        for file in files {
            let text = match std::fs::read(file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot read `{}`", file.display()))
                }
            };
            let text = String::from_utf8_lossy(&text);
            for (i, line) in text.lines().enumerate() {
                let origin = Origin {
                    file: file.clone(),
                    line: i + 1,
                };
                entries.extend(parse_line(line, origin));
            }
        }
        Ok(KnownHosts { entries })
    }

    /// Key types recorded for `name` (plain and hashed entries), first seen first.
    pub fn key_types(&self, name: &str) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for e in self.for_name(name).filter(|e| e.marker == Marker::Plain) {
            if !types.contains(&e.key_type) {
                types.push(e.key_type.clone());
            }
        }
        types
    }

    /// OpenSSH's order: a revoked key loses even where a plain entry also lists it.
    pub fn check(&self, name: &str, key_type: &str, key: &[u8]) -> Verdict {
        let entries: Vec<&Entry> = self.for_name(name).collect();
        let with = |m: Marker| entries.iter().filter(move |e| e.marker == m);
        if let Some(e) = with(Marker::Revoked).find(|e| e.key == key) {
            return Verdict::Revoked(e.origin.clone());
        }
        if with(Marker::Plain).any(|e| e.key == key) {
            return Verdict::Match;
        }
        if let Some(e) = with(Marker::Plain).find(|e| e.key_type == key_type) {
            return Verdict::Changed(e.origin.clone());
        }
        if let Some(e) = with(Marker::CertAuthority).next() {
            return Verdict::CertAuthorityOnly(e.origin.clone());
        }
        Verdict::NotFound
    }

    fn for_name<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.hosts.matches(name))
    }
}

fn parse_line(line: &str, origin: Origin) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return None,
        _ => Marker::Plain,
    };
    if marker != Marker::Plain {
        first = fields.next()?;
    }
    let key_type = fields.next()?.to_string();
    let key = base64::engine::general_purpose::STANDARD
        .decode(fields.next()?)
        .ok()?;
    Some(Entry {
        origin,
        marker,
        hosts: Hosts::parse(first)?,
        key_type,
        key,
    })
}

impl Hosts {
    fn parse(field: &str) -> Option<Hosts> {
        let Some(hashed) = field.strip_prefix("|1|") else {
            return Some(Hosts::Patterns(field.to_string()));
        };
        let (salt, hash) = hashed.split_once('|')?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Some(Hosts::Hashed {
            salt: b64.decode(salt).ok()?,
            hash: b64.decode(hash).ok()?,
        })
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Patterns(list) => match_pattern_list(name, list),
            Hosts::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
        }
    }
}

/// OpenSSH's `match_hostname`: case-insensitive; a negated pattern that matches vetoes the
/// whole list; otherwise any positive match wins.
pub fn match_pattern_list(name: &str, list: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let mut positive = false;
    for pattern in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let pattern = pattern.to_ascii_lowercase();
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p.to_string()),
            None => (false, pattern),
        };
        if wildmatch::WildMatch::new(&pattern).matches(&name) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `host` or `[host]:port`, as OpenSSH names a host in known_hosts.
pub fn host_port_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Append one entry (the file and its folder are created private, as `ssh` does).
pub fn append(path: &Path, line: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("cannot record the host key in `{}`", path.display()))?;
    file.write_all(line.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    fn key(b64: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }

    fn load(text: &str) -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, text).unwrap();
        let kh = KnownHosts::load(&[path, dir.path().join("missing")]).unwrap();
        (dir, kh)
    }

    #[test]
    fn patterns_match_as_openssh_does() {
        assert!(match_pattern_list("spark.lan", "*.lan"));
        assert!(match_pattern_list("Spark.LAN", "*.lan"));
        assert!(match_pattern_list("[10.0.0.7]:2222", "[10.0.0.*]:2222"));
        assert!(!match_pattern_list("[10.0.0.7]:22", "[10.0.0.*]:2222"));
        assert!(!match_pattern_list("10.0.0.7", "[10.0.0.*]:2222"));
        assert!(match_pattern_list("box1", "box?"));
        assert!(!match_pattern_list("box12", "box?"));
        assert!(!match_pattern_list("bad.lan", "*.lan,!bad.lan"));
        assert!(!match_pattern_list("bad.lan", "!bad.lan,*.lan"));
        assert!(match_pattern_list("good.lan", "!bad.lan,*.lan"));
        // A list of only negations matches nothing.
        assert!(!match_pattern_list("good.lan", "!bad.lan"));
        assert!(match_pattern_list("b", "a,b,c"));
    }

    #[test]
    fn hashed_names_match_only_their_host() {
        // What `ssh-keygen -H` (OpenSSH 9.2) wrote for `[127.0.0.1]:2222`.
        let field = "|1|tFDOMVNrtPVt7Nxubkl0u5MJyd8=|6fAvB5Me9kxJgJ5u8clO8Hoy8os=";
        let (_d, kh) = load(&format!("{field} ssh-ed25519 {KEY_A}\n"));
        assert_eq!(
            kh.check("[127.0.0.1]:2222", "ssh-ed25519", &key(KEY_A)),
            Verdict::Match
        );
        assert_eq!(
            kh.check("[127.0.0.1]:2223", "ssh-ed25519", &key(KEY_A)),
            Verdict::NotFound
        );
    }

    #[test]
    fn revoked_wins_over_a_plain_match_and_changed_names_the_line() {
        let (dir, kh) = load(&format!(
            "# comment\n\nspark ssh-ed25519 {KEY_A}\n@revoked * ssh-ed25519 {KEY_B}\nspark ssh-ed25519 {KEY_B}\n"
        ));
        let file = dir.path().join("known_hosts");
        assert_eq!(
            kh.check("spark", "ssh-ed25519", &key(KEY_B)),
            Verdict::Revoked(Origin {
                file: file.clone(),
                line: 4
            })
        );
        assert_eq!(
            kh.check("spark", "ssh-ed25519", &key(KEY_A)),
            Verdict::Match
        );
        let (_d, kh) = load(&format!("spark ssh-ed25519 {KEY_A}\n"));
        assert!(matches!(
            kh.check("spark", "ssh-ed25519", &key(KEY_B)),
            Verdict::Changed(Origin { line: 1, .. })
        ));
        // Another key type only: not known (ssh would ask), not changed.
        assert_eq!(
            kh.check("spark", "ecdsa-sha2-nistp256", &key(KEY_B)),
            Verdict::NotFound
        );
        assert_eq!(kh.key_types("spark"), vec!["ssh-ed25519".to_string()]);
    }

    #[test]
    fn cert_authority_is_reported_and_junk_lines_are_skipped() {
        let (_d, kh) = load(&format!(
            "@cert-authority *.lan ssh-ed25519 {KEY_A}\n@weird x y z\nnot-a-line\nspark ssh-ed25519 !!notbase64\n"
        ));
        assert!(matches!(
            kh.check("spark.lan", "ssh-ed25519", &key(KEY_B)),
            Verdict::CertAuthorityOnly(Origin { line: 1, .. })
        ));
        assert_eq!(
            kh.check("spark", "ssh-ed25519", &key(KEY_B)),
            Verdict::NotFound
        );
    }
}
