//! clap value parsers: a bad argument value is a usage error, so clap prints it with the
//! option's name and exits 2 before any host is touched.

use crate::ui::{one_line, Hint};

/// The error's messages on one line, then its hint (clap prints the text after the option).
fn usage_text(err: anyhow::Error) -> String {
    match err.downcast_ref::<Hint>() {
        Some(hint) => format!("{}\n\n  hint: {hint}", one_line(&err)),
        None => one_line(&err),
    }
}

/// `KEY=VALUE` for `env set`.
pub fn assignment(arg: &str) -> Result<(String, String), String> {
    crate::envfile::parse_assignment(arg).map_err(usage_text)
}

/// `--host`, `--from`, `--to`: `local`, or a destination whose syntax is sound (an alias is
/// resolved later, against ~/.ssh/config).
pub fn host_target(arg: &str) -> Result<String, String> {
    if arg != "local" {
        crate::host::check_destination(arg).map_err(usage_text)?;
    }
    Ok(arg.to_string())
}

/// `--playbook`: an embedded name (the profile spelling `dgx_spark` too) or an existing file.
pub fn playbook(arg: &str) -> Result<String, String> {
    crate::playbook::Playbook::resolve_name(arg).map_err(usage_text)
}

/// `--url`: an absolute http(s) URL with a host.
pub fn http_url(arg: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(arg).map_err(|e| {
        format!("`{arg}` is not a URL: {e}\n\n  hint: e.g. `http://192.168.1.101:8188`")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "`{arg}` is not an http(s) URL with a host\n\n  hint: e.g. `http://192.168.1.101:8188`"
        ));
    }
    Ok(arg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playbook_accepts_profile_spelling_and_rejects_unknown() {
        assert_eq!(playbook("dgx_spark").unwrap(), "dgx-spark");
        assert_eq!(playbook("rtx_4090").unwrap(), "rtx-4090");
        assert_eq!(playbook("generic_nvidia").unwrap(), "generic-nvidia");
        let err = playbook("nosuch").unwrap_err();
        assert!(err.contains("dgx-spark, rtx-4090, generic-nvidia"), "{err}");
    }

    #[test]
    fn url_needs_scheme_and_host() {
        assert!(http_url("notaurl").is_err());
        assert!(http_url("ftp://h/").is_err());
        assert!(http_url("http://127.0.0.1:8188").is_ok());
    }

    #[test]
    fn host_rejects_bad_port_keeps_alias() {
        assert!(host_target("u@h:abc").unwrap_err().contains("abc"));
        assert_eq!(host_target("spark").unwrap(), "spark");
        assert_eq!(host_target("local").unwrap(), "local");
    }
}
