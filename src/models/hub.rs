//! Hugging Face conventions: where the token comes from, which host may see it, and what the
//! hub's headers and refusals mean (huggingface_hub's `file_download.py` and `utils/_http.py`).

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, Result};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Url;

use crate::defaults;

/// A bearer token. Never printed: `Debug` and `Display` show only that there is one.
#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Whether the request that was refused carried the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// No token is configured.
    None,
    /// A token is configured, but the refusing host is not the hub, so it never got it.
    NotSent,
    Sent,
}

/// The hub that may receive the token: huggingface.co, or the mirror in `HF_ENDPOINT`.
#[derive(Debug, Clone)]
pub struct Hub {
    endpoint: Url,
    token: Option<Token>,
}

impl Hub {
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Hub> {
        let endpoint = Url::parse(endpoint).with_context(|| {
            format!("`{}` ({endpoint}) is not a URL", defaults::ENV_HF_ENDPOINT)
        })?;
        let token = token
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(Token);
        Ok(Hub { endpoint, token })
    }

    /// From this machine's environment: the token is the operator's, not the target's.
    pub fn from_env() -> Result<Hub> {
        let endpoint = std::env::var(defaults::ENV_HF_ENDPOINT)
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| defaults::HF_ENDPOINT.to_string());
        let token = match std::env::var(defaults::ENV_HF_TOKEN) {
            Ok(t) if !t.trim().is_empty() => Some(t),
            _ => token_file().and_then(|p| std::fs::read_to_string(p).ok()),
        };
        Hub::new(&endpoint, token)
    }

    /// A manifest URL on huggingface.co moved to the endpoint (path kept), as huggingface_hub
    /// builds every hub URL on `HF_ENDPOINT`: mirrors and air-gapped proxies rely on it. Other
    /// URLs, and every URL when the endpoint is huggingface.co itself, are left alone.
    pub fn rewrite(&self, url: &str) -> String {
        let hub = format!("{}/", defaults::HF_ENDPOINT);
        match url.strip_prefix(&hub) {
            Some(path) => format!("{}/{path}", self.endpoint.as_str().trim_end_matches('/')),
            None => url.to_string(),
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The `Authorization` header for `url`, only when `url` is on the hub itself (same scheme,
    /// host and port). A CDN the hub redirects to never gets it; reqwest also strips it on a
    /// redirect to another host, which the tests check.
    /// What the token did for a refusal from `authority` (`host[:port]`, as in the error).
    pub fn token_use(&self, authority: &str) -> TokenUse {
        match (
            &self.token,
            authority == super::http::authority(&self.endpoint),
        ) {
            (None, _) => TokenUse::None,
            (Some(_), false) => TokenUse::NotSent,
            (Some(_), true) => TokenUse::Sent,
        }
    }

    pub fn auth_headers(&self, url: &Url) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let same_origin = url.scheme() == self.endpoint.scheme()
            && url.host_str() == self.endpoint.host_str()
            && url.port_or_known_default() == self.endpoint.port_or_known_default();
        if let (true, Some(Token(token))) = (same_origin, &self.token) {
            if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}")) {
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
        }
        headers
    }
}

fn token_file() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os(defaults::ENV_HF_HOME).filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home).join("token"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    let rel = defaults::HF_HOME.trim_start_matches("~/");
    Some(PathBuf::from(home).join(rel).join("token"))
}

/// What the hub says about an LFS file before redirecting: `X-Linked-Etag` is its sha256
/// (possibly quoted or `W/`-prefixed), `X-Linked-Size` its size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Linked {
    pub sha256: Option<String>,
    pub size: Option<u64>,
}

impl Linked {
    pub fn from_headers(headers: &HeaderMap) -> Linked {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Linked {
            sha256: text("x-linked-etag").map(|e| unquote_etag(e).to_ascii_lowercase()),
            size: text("x-linked-size").and_then(|s| s.trim().parse().ok()),
        }
    }
}

/// `W/"abc"` -> `abc`.
pub fn unquote_etag(etag: &str) -> &str {
    etag.trim().trim_start_matches("W/").trim_matches('"')
}

/// The advice for a refusal that retrying cannot fix.
pub fn refusal_hint(status: u16, gated: bool, token: TokenUse, id: &str) -> String {
    let has_token = token == TokenUse::Sent;
    match (status, gated, has_token) {
        (401, _, false) if token == TokenUse::NotSent => "the server refused a link the hub gave (your token only goes to the hub, so it is not the cause): the link may have expired; run the same command again".to_string(),
        (401, _, false) | (403, true, false) => "the repository is gated or private: set `HF_TOKEN` or run `huggingface-cli login` on this machine".to_string(),
        (401, _, true) => "your Hugging Face token was refused: check `HF_TOKEN` or run `huggingface-cli login` again".to_string(),
        (403, true, true) => "the repository is gated and your token is not in its authorized list: accept the conditions on the model page, then retry".to_string(),
        (403, _, _) => "the server forbids this file: check the URL, or whether it needs a token".to_string(),
        (404, _, _) => format!("the URL of `{id}` in the manifest is wrong (or the file was removed upstream): fix `url`"),
        (410, _, _) => format!("the file of `{id}` was removed upstream: fix `url` in the manifest"),
        _ => format!("check the URL of `{id}` in the manifest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_goes_only_to_the_hub_origin() {
        let hub = Hub::new("https://huggingface.co", Some("hf_secret\n".into())).unwrap();
        let auth = |u: &str| hub.auth_headers(&Url::parse(u).unwrap());
        assert_eq!(
            auth("https://huggingface.co/a/resolve/main/x")["authorization"],
            "Bearer hf_secret"
        );
        assert!(auth("https://cdn-lfs.huggingface.co/x").is_empty());
        assert!(auth("http://huggingface.co/x").is_empty());
        assert!(auth("https://huggingface.co:8443/x").is_empty());
        assert!(!format!("{hub:?}").contains("hf_secret"));
    }

    #[test]
    fn hub_urls_move_to_the_endpoint_with_their_path() {
        let url = "https://huggingface.co/org/repo/resolve/main/x.bin?download=true";
        let mirror = Hub::new("http://127.0.0.1:8080/hf/", None).unwrap();
        assert_eq!(
            mirror.rewrite(url),
            "http://127.0.0.1:8080/hf/org/repo/resolve/main/x.bin?download=true"
        );
        assert_eq!(
            mirror.rewrite("https://example.com/x"),
            "https://example.com/x"
        );
        assert_eq!(
            mirror.rewrite("https://huggingface.com/x"),
            "https://huggingface.com/x"
        );
        let hub = Hub::new("https://huggingface.co", None).unwrap();
        assert_eq!(hub.rewrite(url), url);
    }

    #[test]
    fn linked_headers_are_unquoted() {
        let mut h = HeaderMap::new();
        h.insert("x-linked-etag", HeaderValue::from_static("W/\"ABC123\""));
        h.insert("x-linked-size", HeaderValue::from_static("42"));
        assert_eq!(
            Linked::from_headers(&h),
            Linked {
                sha256: Some("abc123".into()),
                size: Some(42)
            }
        );
    }
}
