//! A dotenv file as text, edited in place: only the bytes of the value being changed move;
//! comments, blank lines, order, `export ` prefixes, quotes, CRLF line ends and a missing final
//! newline all stay. Pure functions of text, so every case is a byte-exact fixture test.
//!
//! Syntax follows python-dotenv, the most common loader: `[export ]KEY=VALUE`; an unquoted
//! value ends at whitespace followed by `#` (an inline comment); single quotes are literal;
//! double quotes take backslash escapes and may span lines. When a key appears more than once,
//! the LAST occurrence wins (python-dotenv, node dotenv's `parse` and Docker Compose agree), so
//! `get` reads it and `set` edits it; earlier ones are shadowed and left alone.

use std::ops::Range;

use anyhow::Result;

use crate::ui::HintExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    None,
    Single,
    Double,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub key: String,
    /// The decoded value (quotes removed, escapes applied).
    pub value: String,
    /// Where the raw value sits in the text, quotes included, comment and padding excluded.
    pub raw: Range<usize>,
    pub quote: Quote,
}

/// Every `KEY=VALUE` in file order; lines that are not assignments are skipped.
pub fn parse(text: &str) -> Vec<Assignment> {
    let bytes = text.as_bytes();
    // A UTF-8 byte-order mark is not part of the first key.
    let mut pos = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let mut found = Vec::new();
    while pos < bytes.len() {
        let (assignment, next) = parse_line(text, pos);
        found.extend(assignment);
        pos = next;
    }
    found
}

/// The value in effect for `key`: the last assignment.
pub fn get(text: &str, key: &str) -> Option<String> {
    parse(text)
        .into_iter()
        .rev()
        .find(|a| a.key == key)
        .map(|a| a.value)
}

/// Set each `(key, value)`: the last assignment of the key gets the new value (in the quote
/// style it had when that style can hold it); a missing key is appended at the end with the
/// file's line ending. A value already equal leaves the text as it is.
pub fn set(text: &str, updates: &[(String, String)]) -> Result<String> {
    let mut text = text.to_string();
    for (key, value) in updates {
        check_key(key)?;
        let last = parse(&text).into_iter().rev().find(|a| &a.key == key);
        match last {
            Some(a) if &a.value == value => {}
            Some(a) => text.replace_range(a.raw.clone(), &encode(key, value, a.quote)?),
            None => append(
                &mut text,
                &format!("{key}={}", encode(key, value, Quote::None)?),
            ),
        }
        // A quote opened and never closed earlier in the file swallows what follows it (as
        // python-dotenv reads it): the new line would not be read back.
        if get(&text, key).as_ref() != Some(value) {
            let line = unclosed_quote_line(&text).map_or(String::new(), |l| format!(" (line {l})"));
            return Err(anyhow::anyhow!(
                "`{key}` would not read back as set: the file has a quote that is never closed{line}"
            ))
            .hint("close the quote on that line, then run again");
        }
    }
    Ok(text)
}

/// The line (1-based) of the first value whose quote runs past its own line.
fn unclosed_quote_line(text: &str) -> Option<usize> {
    parse(text)
        .into_iter()
        .find(|a| a.quote != Quote::None && text[a.raw.clone()].contains('\n'))
        .map(|a| text[..a.raw.start].matches('\n').count() + 1)
}

/// `text` with the values of keys `hide` picks replaced by `********` (for diffs and listings
/// that may end up pasted into an issue).
pub fn masked(text: &str, hide: impl Fn(&str) -> bool) -> String {
    let mut out = text.to_string();
    for a in parse(text).iter().rev() {
        if hide(&a.key) && !a.value.is_empty() {
            out.replace_range(a.raw.clone(), "********");
        }
    }
    out
}

/// Keys a shell could also export: a letter or `_`, then letters, digits and `_`.
pub fn check_key(key: &str) -> Result<()> {
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(anyhow::anyhow!("`{key}` is not a valid variable name"))
            .hint("use letters, digits and `_`, not starting with a digit (e.g. `COMFYUI_URL`)");
    }
    Ok(())
}

/// A dotenv value is one line: no line break, no NUL.
pub fn check_one_line(key: &str, value: &str) -> Result<()> {
    if let Some(bad) = value.chars().find(|c| matches!(c, '\n' | '\r' | '\0')) {
        let what = if bad == '\0' {
            "a NUL byte"
        } else {
            "a line break"
        };
        return Err(anyhow::anyhow!("the value of `{key}` contains {what}"))
            .hint("dotenv values are one line; remove it or encode the value (e.g. base64)");
    }
    Ok(())
}

/// The value as it must be written. Plain values stay bare; anything a loader could read
/// differently (spaces, `#`, quotes, `$`, backslashes, non-ASCII) is single-quoted, which every
/// loader takes literally; a value holding `'` is double-quoted with `\` and `"` escaped.
fn encode(key: &str, value: &str, prefer: Quote) -> Result<String> {
    check_one_line(key, value)?;
    let bare = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./:@%+,=-".contains(c));
    let double = || format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""));
    Ok(match prefer {
        Quote::Double => double(),
        Quote::Single if !value.contains('\'') => format!("'{value}'"),
        _ if bare => value.to_string(),
        _ if !value.contains('\'') => format!("'{value}'"),
        _ => double(),
    })
}

/// Append `line` as the last line, with the file's line ending. A file without a final newline
/// keeps having none; an empty file gets one.
fn append(text: &mut String, line: &str) {
    let eol = match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push_str(eol);
        text.push_str(line);
    } else {
        text.push_str(line);
        text.push_str(eol);
    }
}

fn skip_blanks(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && matches!(bytes[pos], b' ' | b'\t') {
        pos += 1;
    }
    pos
}

/// Past the next `\n` from `pos` (or the end).
fn next_line(bytes: &[u8], pos: usize) -> usize {
    bytes[pos..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| pos + i + 1)
}

/// The assignment starting at `start` (if the line is one) and where the next line starts.
fn parse_line(text: &str, start: usize) -> (Option<Assignment>, usize) {
    let bytes = text.as_bytes();
    let mut pos = skip_blanks(bytes, start);
    if bytes[pos..].starts_with(b"export") {
        let after = skip_blanks(bytes, pos + 6);
        if after > pos + 6 {
            pos = after;
        }
    }
    let key_start = pos;
    while pos < bytes.len() && (bytes[pos].is_ascii_alphanumeric() || b"_.-".contains(&bytes[pos]))
    {
        pos += 1;
    }
    let key = &text[key_start..pos];
    pos = skip_blanks(bytes, pos);
    if key.is_empty() || bytes.get(pos) != Some(&b'=') {
        return (None, next_line(bytes, start));
    }
    let value_start = skip_blanks(bytes, pos + 1);
    let (raw, quote) = match quoted_end(bytes, value_start) {
        Some((end, quote)) => (value_start..end, quote),
        None => (value_start..unquoted_end(bytes, value_start), Quote::None),
    };
    let assignment = Assignment {
        key: key.to_string(),
        value: decode(&text[raw.clone()], quote),
        raw: raw.clone(),
        quote,
    };
    (Some(assignment), next_line(bytes, raw.end))
}

/// End (past the closing quote) of a quoted value at `pos`; `None` if not quoted or never closed.
fn quoted_end(bytes: &[u8], pos: usize) -> Option<(usize, Quote)> {
    let quote = match bytes.get(pos)? {
        b'\'' => Quote::Single,
        b'"' => Quote::Double,
        _ => return None,
    };
    let mut i = pos + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == Quote::Double => i += 2,
            b'\'' if quote == Quote::Single => return Some((i + 1, quote)),
            b'"' if quote == Quote::Double => return Some((i + 1, quote)),
            _ => i += 1,
        }
    }
    None
}

/// An unquoted value ends at the line end or at whitespace + `#`, trailing blanks excluded.
fn unquoted_end(bytes: &[u8], pos: usize) -> usize {
    let line_end = bytes[pos..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map_or(bytes.len(), |i| pos + i);
    let mut end = (pos..line_end)
        .find(|&i| bytes[i] == b'#' && i > pos && matches!(bytes[i - 1], b' ' | b'\t'))
        .unwrap_or(line_end);
    while end > pos && matches!(bytes[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    end
}

fn decode(raw: &str, quote: Quote) -> String {
    match quote {
        Quote::None => raw.to_string(),
        Quote::Single => raw[1..raw.len() - 1].to_string(),
        Quote::Double => unescape(&raw[1..raw.len() - 1]),
    }
}

/// python-dotenv's double-quote escapes; an unknown escape stays as written.
fn unescape(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(e @ ('\\' | '"' | '\'')) => out.push(e),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set1(text: &str, key: &str, value: &str) -> String {
        set(text, &[(key.to_string(), value.to_string())]).unwrap()
    }

    #[test]
    fn changes_only_the_value_bytes() {
        let before = "# Life-OS\n\nexport OPENAI_API_KEY=sk-x # keep\nCOMFYUI_URL=http://192.168.1.100:8188  # RTX PC\nCOMFYUI_ENABLED=true\n";
        let after = set1(before, "COMFYUI_URL", "http://192.168.1.101:8188");
        assert_eq!(
            after,
            "# Life-OS\n\nexport OPENAI_API_KEY=sk-x # keep\nCOMFYUI_URL=http://192.168.1.101:8188  # RTX PC\nCOMFYUI_ENABLED=true\n"
        );
    }

    #[test]
    fn crlf_and_no_final_newline_are_kept() {
        let before = "A=1\r\nCOMFYUI_TIMEOUT=300\r\nB=2";
        assert_eq!(
            set1(before, "COMFYUI_TIMEOUT", "600"),
            "A=1\r\nCOMFYUI_TIMEOUT=600\r\nB=2"
        );
        assert_eq!(
            set1(before, "COMFYUI_ENABLED", "true"),
            "A=1\r\nCOMFYUI_TIMEOUT=300\r\nB=2\r\nCOMFYUI_ENABLED=true"
        );
        assert_eq!(set1("A=1\n", "B", "2"), "A=1\nB=2\n");
        assert_eq!(set1("", "B", "2"), "B=2\n");
        assert_eq!(set1("# only a comment", "B", "2"), "# only a comment\nB=2");
    }

    #[test]
    fn last_duplicate_wins_and_is_the_one_edited() {
        let before = "K=first\nX=1\nK=second\n";
        assert_eq!(get(before, "K").as_deref(), Some("second"));
        assert_eq!(set1(before, "K", "third"), "K=first\nX=1\nK=third\n");
    }

    #[test]
    fn quote_styles_are_kept_when_they_can_hold_the_value() {
        assert_eq!(set1("K='a b'\n", "K", "c d"), "K='c d'\n");
        assert_eq!(
            set1("K=\"a\"\n", "K", "say \"hi\""),
            "K=\"say \\\"hi\\\"\"\n"
        );
        assert_eq!(set1("K='a'\n", "K", "it's"), "K=\"it's\"\n");
        assert_eq!(set1("K=a\n", "K", "two words"), "K='two words'\n");
        assert_eq!(set1("K=a\n", "K", "${HOME}"), "K='${HOME}'\n");
        assert_eq!(set1("K=a\n", "K", "x#y"), "K='x#y'\n");
        assert_eq!(set1("K=a\n", "K", ""), "K=\n");
    }

    #[test]
    fn export_prefix_spacing_and_unicode_survive() {
        let before = "\u{feff}export  K = 'ä' # café\n  Ü=ok\nL=ü\n";
        assert_eq!(get(before, "K").as_deref(), Some("ä"));
        assert_eq!(
            set1(before, "K", "日本"),
            "\u{feff}export  K = '日本' # café\n  Ü=ok\nL=ü\n"
        );
        assert_eq!(
            set1(before, "L", "ü"),
            before,
            "an equal value changes nothing"
        );
    }

    #[test]
    fn reads_values_like_python_dotenv() {
        let text = "A=plain # comment\nB=\"x\\ny\\\"z\"\nC='lit\\n'\nD=a#b\nE=\nF=\"multi\nline\"\nG=after\n";
        assert_eq!(get(text, "A").as_deref(), Some("plain"));
        assert_eq!(get(text, "B").as_deref(), Some("x\ny\"z"));
        assert_eq!(get(text, "C").as_deref(), Some("lit\\n"));
        assert_eq!(get(text, "D").as_deref(), Some("a#b"));
        assert_eq!(get(text, "E").as_deref(), Some(""));
        assert_eq!(get(text, "F").as_deref(), Some("multi\nline"));
        assert_eq!(get(text, "G").as_deref(), Some("after"));
        assert_eq!(get(text, "line\""), None);
    }

    #[test]
    fn a_set_swallowed_by_an_unclosed_quote_is_refused_naming_its_line() {
        // Found by tests/properties.rs: `A='` runs to the end of the file.
        let err = set("X=1\nA='\n", &[("A0".into(), "{".into())]).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("`A0` would not read back"), "{text}");
    }

    #[test]
    fn refuses_line_breaks_nul_and_bad_keys() {
        for value in ["a\nb", "a\rb", "a\0b"] {
            let err = set("K=1\n", &[("K".into(), value.into())]).unwrap_err();
            assert!(
                format!("{err:#}").contains("the value of `K` contains"),
                "{err:#}"
            );
        }
        for key in ["1A", "A-B", "", "A B"] {
            assert!(set("", &[(key.into(), "v".into())]).is_err(), "{key}");
        }
    }

    #[test]
    fn masking_hides_only_the_chosen_values() {
        let text = "API_TOKEN=abc # t\nCOMFYUI_URL=http://x\n";
        assert_eq!(
            masked(text, |k| k.contains("TOKEN")),
            "API_TOKEN=******** # t\nCOMFYUI_URL=http://x\n"
        );
    }
}
