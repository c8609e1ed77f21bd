//! The HTTP transport: one probe per file, then byte-range GETs. It knows nothing about files,
//! hashes or progress; it hands out bodies chunk by chunk and classifies what went wrong, so the
//! caller can tell "retry, keep the partial" from "restart from zero" from "give up".

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_RANGE, ETAG, RETRY_AFTER};
use reqwest::{redirect, StatusCode, Url};

use super::hub::{Hub, Linked};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// No byte for this long means a stalled connection: retry it.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured; a server asking for more gets our own backoff.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("HTTP {status} from `{host}`")]
    Status {
        status: u16,
        host: String,
        /// Hugging Face's `X-Error-Code: GatedRepo`.
        gated: bool,
        retry_after: Option<Duration>,
    },
    #[error("{0}")]
    Network(String),
    /// Nothing answered: connection refused, no route, DNS. Retried briefly, then reported.
    #[error("{0}")]
    Unreachable(String),
    /// A 200 to a Range request: the server ignored the range, or (If-Range) the file changed.
    #[error("the server sent the whole file instead of the requested range")]
    RangeIgnored { etag: Option<String> },
    #[error("the server cannot serve bytes from {start} (it has {total:?} bytes)")]
    RangeNotSatisfiable { start: u64, total: Option<u64> },
    #[error("unexpected `Content-Range: {got}` for bytes {start}-{end}")]
    BadContentRange { got: String, start: u64, end: u64 },
    #[error("the server sent {got} bytes where {want} were expected")]
    WrongLength { got: u64, want: u64 },
}

impl FetchError {
    /// Worth another try with the partial kept: lost connections, timeouts, 408, 429, 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            FetchError::Network(_) | FetchError::Unreachable(_) => true,
            FetchError::WrongLength { got, want } => got < want,
            _ => false,
        }
    }

    /// Failed tries in a row before giving up: few when nothing answers at all, since a
    /// refused connection rarely heals in the minutes a full backoff would wait.
    pub fn max_failures(&self, attempts: u32) -> u32 {
        match self {
            FetchError::Unreachable(_) => attempts.min(2),
            _ => attempts,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What the file's URL answers before any byte is fetched.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Where the bytes are: the redirect target (a CDN) or the URL itself.
    pub data_url: Url,
    pub linked: Linked,
    /// `Content-Length` of a direct (non-redirect) answer.
    pub length: Option<u64>,
}

/// A half-open byte range `[start, end)` of a file of `total` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    pub total: u64,
}

/// A body being received.
pub struct Body {
    response: reqwest::Response,
    pub etag: Option<String>,
    remaining: u64,
}

impl Body {
    /// The next chunk, `None` at the end; a short body is a transient error.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        match self.response.chunk().await.map_err(network)? {
            // More than asked for: a broken server or proxy; not worth retrying.
            Some(b) if b.len() as u64 > self.remaining => Err(FetchError::WrongLength {
                got: b.len() as u64,
                want: self.remaining,
            }),
            Some(b) => {
                self.remaining -= b.len() as u64;
                Ok(Some(b))
            }
            None if self.remaining > 0 => Err(FetchError::Network(format!(
                "the connection closed with {} bytes still to come",
                self.remaining
            ))),
            None => Ok(None),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
    /// Does not follow redirects, so the hub's own headers (`X-Linked-*`, `Location`) are seen.
    probe_client: reqwest::Client,
    hub: Hub,
}

impl Transport {
    pub fn new(hub: Hub) -> Result<Transport, FetchError> {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("lifeos-spark/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .tcp_nodelay(true)
        };
        Ok(Transport {
            // reqwest's default policy drops `Authorization` on a redirect to another host.
            client: builder().build().map_err(network)?,
            probe_client: builder()
                .redirect(redirect::Policy::none())
                .build()
                .map_err(network)?,
            hub,
        })
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// HEAD the manifest URL without following redirects (as huggingface_hub does).
    pub async fn probe(&self, url: &Url) -> Result<Probe, FetchError> {
        let response = self
            .probe_client
            .head(url.clone())
            .headers(self.hub.auth_headers(url))
            .send()
            .await
            .map_err(|e| traced("HEAD", url, None, network(e)))?;
        let status = response.status();
        trace("HEAD", url, None, &self.hub, status);
        let linked = Linked::from_headers(response.headers());
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| FetchError::Network(format!("a {status} without `Location`")))?;
            return Ok(Probe {
                data_url: location,
                linked,
                length: None,
            });
        }
        // Some servers refuse HEAD; the GET that follows will tell what is wrong, if anything.
        if status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_IMPLEMENTED {
            return Ok(Probe {
                data_url: url.clone(),
                linked,
                length: None,
            });
        }
        check_status(&response)?;
        // From the header: reqwest reports the (empty) body of a HEAD answer as 0 bytes.
        let length = header(response.headers(), reqwest::header::CONTENT_LENGTH)
            .and_then(|l| l.parse().ok());
        Ok(Probe {
            data_url: url.clone(),
            linked,
            length,
        })
    }

    /// GET `span` of `url`. Asks for a range unless the span is the whole file; `validator`
    /// (the ETag seen earlier) goes in `If-Range`, so a changed file answers 200, not 206.
    pub async fn get(
        &self,
        url: &Url,
        span: Span,
        validator: Option<&str>,
    ) -> Result<Body, FetchError> {
        let whole = span.start == 0 && span.end == span.total;
        let mut request = self
            .client
            .get(url.clone())
            .headers(self.hub.auth_headers(url));
        let mut range = None;
        if !whole {
            // Open-ended when the span runs to the end, as curl and rustup resume.
            let bytes = if span.end == span.total {
                format!("bytes={}-", span.start)
            } else {
                format!("bytes={}-{}", span.start, span.end - 1)
            };
            request = request.header(reqwest::header::RANGE, &bytes);
            range = Some(bytes);
            // If-Range needs a strong validator (RFC 9110 13.1.5).
            if let Some(v) = validator.filter(|v| !v.starts_with("W/")) {
                request = request.header(reqwest::header::IF_RANGE, v);
            }
        }
        let range = range.as_deref();
        let response = (request.send().await).map_err(|e| traced("GET", url, range, network(e)))?;
        trace("GET", url, range, &self.hub, response.status());
        let etag = header(response.headers(), ETAG).map(str::to_string);
        match response.status() {
            StatusCode::PARTIAL_CONTENT if !whole => check_content_range(response.headers(), span)?,
            StatusCode::OK | StatusCode::PARTIAL_CONTENT if whole => {}
            StatusCode::OK => return Err(FetchError::RangeIgnored { etag }),
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let total = header(response.headers(), CONTENT_RANGE)
                    .and_then(|c| c.strip_prefix("bytes */")?.parse().ok());
                return Err(FetchError::RangeNotSatisfiable {
                    start: span.start,
                    total,
                });
            }
            _ => check_status(&response)?,
        }
        let want = span.end - span.start;
        if let Some(len) = response.content_length().filter(|l| *l != want) {
            return Err(FetchError::WrongLength { got: len, want });
        }
        Ok(Body {
            response,
            etag,
            remaining: want,
        })
    }
}

/// `-v`'s line for a request that was answered: method, URL (credentials masked by `trace`),
/// `Range`, whether the hub token went with it (never the token), status.
fn trace(method: &str, url: &Url, range: Option<&str>, hub: &Hub, status: StatusCode) {
    let token = match hub.auth_headers(url).is_empty() {
        true => "",
        false => " (hub token sent)",
    };
    let range = range.map(|r| format!(" Range: {r}")).unwrap_or_default();
    crate::trace::line(format_args!(
        "HTTP {method} {url}{range}{token} -> {status}"
    ));
}

/// `-v`'s line for a request that got no answer; the error goes on.
fn traced(method: &str, url: &Url, range: Option<&str>, err: FetchError) -> FetchError {
    let range = range.map(|r| format!(" Range: {r}")).unwrap_or_default();
    crate::trace::line(format_args!("HTTP {method} {url}{range} -> {err}"));
    err
}

fn header(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn network(e: reqwest::Error) -> FetchError {
    // The source chain holds the useful part ("connection refused", "operation timed out").
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    // reqwest names the URL, credentials included.
    let text = super::redact::text(&text);
    match e.is_connect() {
        true => FetchError::Unreachable(text),
        false => FetchError::Network(text),
    }
}

/// `host[:port]` (the port only when the URL names one): what a status came from.
pub fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

fn check_status(response: &reqwest::Response) -> Result<(), FetchError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let headers = response.headers();
    Err(FetchError::Status {
        status: status.as_u16(),
        host: authority(response.url()),
        gated: header(headers, "x-error-code".parse().expect("header name")) == Some("GatedRepo"),
        retry_after: header(headers, RETRY_AFTER)
            .and_then(|s| s.trim().parse().ok())
            .map(Duration::from_secs)
            .map(|d| d.min(MAX_RETRY_AFTER)),
    })
}

/// Accept a 206 only for exactly the bytes asked for, of a file of the expected size.
fn check_content_range(headers: &HeaderMap, span: Span) -> Result<(), FetchError> {
    let got = header(headers, CONTENT_RANGE).unwrap_or("");
    let parsed = parse_content_range(got);
    if parsed == Some((span.start, span.end - 1, Some(span.total)))
        || parsed == Some((span.start, span.end - 1, None))
    {
        return Ok(());
    }
    Err(FetchError::BadContentRange {
        got: got.to_string(),
        start: span.start,
        end: span.end - 1,
    })
}

/// `bytes 0-99/1000` -> `(0, 99, Some(1000))`; `bytes 0-99/*` -> `(0, 99, None)`.
pub fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    Some((first.parse().ok()?, last.parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some((0, 99, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn transient_errors_are_classified() {
        let status = |s| FetchError::Status {
            status: s,
            host: "h".into(),
            gated: false,
            retry_after: None,
        };
        assert!(status(429).is_transient());
        assert!(status(503).is_transient());
        assert!(!status(401).is_transient());
        assert!(!status(403).is_transient());
        assert!(!status(404).is_transient());
        assert!(FetchError::Network("reset".into()).is_transient());
        assert!(!FetchError::RangeIgnored { etag: None }.is_transient());
    }
}
