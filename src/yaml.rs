//! YAML parse errors as compilers print them, `file:line:col: message`, for every file format
//! the tool reads (manifests, playbooks, node lists). serde_yaml appends " at line L column C"
//! to some messages and not others; the location goes in front, always.

/// `err` with `source` and its location in front.
pub fn located(err: &serde_yaml::Error, source: &str) -> String {
    let text = err.to_string();
    let message = text
        .rfind(" at line ")
        .map_or(text.as_str(), |i| &text[..i]);
    match err.location() {
        Some(l) => format!("{source}:{}:{}: {message}", l.line(), l.column()),
        None => format!("{source}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn location_goes_in_front() {
        let err = serde_yaml::from_str::<Vec<u8>>("[1, x]").unwrap_err();
        let text = super::located(&err, "f.yaml");
        assert!(text.starts_with("f.yaml:1:5: "), "{text}");
        assert!(!text.contains(" at line "), "{text}");
    }
}
