//! `-v`: one `debug:` line on stderr for each command run on an SSH host and each HTTP request,
//! never with a secret in it: URL credentials become `user:***@`, a `KEY=value` word whose key
//! looks secret (`HF_TOKEN=…`) becomes `KEY=***`, and a bearer token is only said to be sent.
//! Process-wide, as `lock::set_no_wait`: these calls sit deep in `host/` and `models/`, far
//! from the command's printer.

use std::sync::atomic::{AtomicBool, Ordering};

static ON: AtomicBool = AtomicBool::new(false);

pub fn set(on: bool) {
    ON.store(on, Ordering::SeqCst);
}

pub fn on() -> bool {
    ON.load(Ordering::SeqCst)
}

/// Print `msg`, masked, when `-v` is on.
pub fn line(msg: impl std::fmt::Display) {
    if on() {
        eprintln!("debug: {}", mask(&msg.to_string()));
    }
}

/// `text` with URL credentials and the values of secret-looking `KEY=value` words masked.
pub fn mask(text: &str) -> String {
    let text = crate::models::redact::text(text);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(eq) = rest.find('=') {
        let (head, tail) = rest.split_at(eq);
        let key_start = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        out.push_str(head);
        let value_len = tail[1..]
            .find(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len() - 1);
        if crate::envfile::is_secret(&head[key_start..]) && value_len > 0 {
            out.push_str("=***");
        } else {
            out.push_str(&tail[..=value_len]);
        }
        rest = &tail[1 + value_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn secrets_are_masked_the_rest_is_kept() {
        assert_eq!(
            mask("env HF_TOKEN=hf_abc 'API_KEY=x y' docker run -e A=1 http://u:pw@h/x?a=b"),
            "env HF_TOKEN=*** 'API_KEY=*** y' docker run -e A=1 http://u:***@h/x?a=b"
        );
        assert_eq!(mask("a=b=c PASSWORD="), "a=b=c PASSWORD=");
        assert_eq!(mask("no equals here"), "no equals here");
    }
}
