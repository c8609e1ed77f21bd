//! Credentials in URLs (`https://user:password@host/...`) are redacted wherever a URL is
//! printed or stored, as curl and git do: the password becomes `***`, the user stays (it tells
//! which account). A stored record keeps a hash of the real URL to notice that it changed.

use sha2::{Digest, Sha256};

const MASK: &str = "***";

/// `url` with its password (or a user-only credential, such as a token) masked.
pub fn url(url: &str) -> String {
    text(url)
}

/// Every `scheme://user:password@` in `text` with the password masked; a `scheme://token@`
/// (user only, as GitHub-style tokens are passed) masked whole.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| "/?#`'\"<>()[]".contains(c) || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:{MASK}")),
                    None => out.push_str(MASK),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The sha256 of the real URL: stored beside the redacted one to detect a change of it.
pub fn url_hash(url: &str) -> String {
    hex::encode(Sha256::digest(url.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_users_kept() {
        assert_eq!(url("http://u:pw@h:8/a@b"), "http://u:***@h:8/a@b");
        assert_eq!(url("https://tok@h/x"), "https://***@h/x");
        assert_eq!(url("https://h/x?a=b"), "https://h/x?a=b");
        assert_eq!(
            text("cannot fetch `m` from `http://u:p:q@h/m` (error for url (http://u:p@h/m))"),
            "cannot fetch `m` from `http://u:***@h/m` (error for url (http://u:***@h/m))"
        );
        assert_eq!(text("no url here://"), "no url here://");
        assert_ne!(url_hash("http://u:a@h/"), url_hash("http://u:b@h/"));
    }
}
