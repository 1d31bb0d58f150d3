//! One error type for the whole core: the code JavaScript sees as `err.code`, whether another
//! attempt can help, and a message that names the URL and what to do — never the token.

use alloc::format;
use alloc::string::String;
use core::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Refused, no route, or the connection broke before a whole response arrived.
    Unreachable(&'static str),
    /// The host's name does not exist (NXDOMAIN): reported as unreachable, never retried.
    NameNotFound,
    /// One attempt (connect + response) or the whole call ran out of time.
    Timeout,
    /// HTTP 404: no service account is attached to the VM, function or container revision.
    NoServiceAccount,
    /// HTTP 404 for a metadata key (getMetadata), or a value found nowhere (getFolderId).
    NotFound,
    /// Any other non-2xx status.
    Status(u16),
    /// Not a token: a redirect, a body too large, not JSON, a field missing or of the wrong type.
    BadResponse(String),
    /// HTTP 404 without `Metadata-Flavor: Google`: not a metadata service, or one whose
    /// GCE-compatible endpoint is turned off (a Cloud Function's answers so). A bad response.
    NotFoundWithoutFlavor,
    /// An option or environment variable that cannot be used.
    InvalidOption(String),
    /// A bug in this package (a panic), turned into an error instead of a crashed process.
    Internal,
}

/// Where the metadata service is turned off, by product: Yandex Cloud documents 404 from Cloud
/// Functions and 400 from VMs when it is. Named in every hint of an answer it can explain.
pub const HINT_ENDPOINT_DISABLED: &str =
    "the GCE-compatible metadata endpoint is disabled for this function, container or VM: it must \
     be enabled in the metadata options of the Cloud Functions version (gceHttpEndpoint, \
     gce-http-endpoint in the yc CLI), of the Serverless Containers revision (gceHttpEndpoint, \
     gce-http-endpoint) or of the VM (gceHttpEndpoint and gceHttpToken, gce-http-endpoint and \
     gce-http-token)";

/// For an answer that a server other than the metadata service would give.
pub const HINT_NOT_METADATA: &str =
    "this is not a metadata service (check YC_METADATA_ADDR / GCE_METADATA_HOST)";

pub const HINT_OFF_CLOUD: &str =
    "Outside Yandex Cloud or Compute Engine? Set YC_METADATA_ADDR=host:port of a \
     metadata emulator (npx yc-metadata-token emulator) or pass { host }.";

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unreachable(_) | Error::NameNotFound => "ERR_METADATA_UNREACHABLE",
            Error::Timeout => "ERR_METADATA_TIMEOUT",
            Error::NoServiceAccount => "ERR_METADATA_NO_SERVICE_ACCOUNT",
            Error::NotFound => "ERR_METADATA_NOT_FOUND",
            Error::Status(_) => "ERR_METADATA_STATUS",
            Error::BadResponse(_) | Error::NotFoundWithoutFlavor => "ERR_METADATA_BAD_RESPONSE",
            Error::InvalidOption(_) => "ERR_INVALID_OPTION",
            Error::Internal => "ERR_METADATA_INTERNAL",
        }
    }

    /// Transient failures worth another attempt. A 404 is permanent and any other 4xx is a client
    /// problem another attempt will not fix; a bad body means the wrong server, not a busy one.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable(_) | Error::Timeout => true,
            Error::Status(status) => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status(status) => Some(*status),
            Error::NoServiceAccount | Error::NotFound => Some(404),
            _ => None,
        }
    }

    /// The message for a failed call to `url` after `attempts` attempts.
    pub fn describe(&self, url: &str, attempts: u32) -> String {
        let tries = if attempts > 1 {
            format!(" (after {attempts} attempts)")
        } else {
            String::new()
        };
        match self {
            Error::Unreachable(what) => {
                format!("Metadata service at {url} is unreachable: {what}{tries}. {HINT_OFF_CLOUD}")
            }
            Error::NameNotFound => format!(
                "Metadata service at {url} is unreachable: name not found (the host name does not \
                 exist in DNS). {HINT_OFF_CLOUD}"
            ),
            Error::Timeout => format!(
                "Metadata service at {url} did not answer in time{tries}. {HINT_OFF_CLOUD}"
            ),
            Error::NoServiceAccount => format!(
                "Metadata service at {url} has no service account (HTTP 404). Either none is \
                 attached to the container revision, function version or VM (attach one), or \
                 {HINT_ENDPOINT_DISABLED}."
            ),
            Error::NotFoundWithoutFlavor => format!(
                "Metadata service at {url} answered HTTP 404 without the Metadata-Flavor: Google \
                 header. Either {HINT_NOT_METADATA}, or {HINT_ENDPOINT_DISABLED}."
            ),
            Error::Status(400) => format!(
                "Metadata service at {url} answered HTTP 400. Either {HINT_NOT_METADATA}, or \
                 {HINT_ENDPOINT_DISABLED}."
            ),
            Error::NotFound => format!(
                "Metadata service at {url} has no such key (HTTP 404). Check the key's spelling \
                 (keys are paths under /computeMetadata/v1/, like instance/id); not every \
                 service serves every key."
            ),
            Error::Status(403) => format!(
                "Metadata service at {url} refused the request (HTTP 403). Requests through a proxy \
                 or with X-Forwarded-For are refused; the token must be fetched directly."
            ),
            Error::Status(status) => {
                format!("Metadata service at {url} answered HTTP {status}{tries}.")
            }
            Error::BadResponse(what) => format!(
                "Metadata service at {url} sent a bad response: {what}. Is YC_METADATA_ADDR \
                 pointing at a GCE-compatible metadata service?"
            ),
            Error::InvalidOption(what) => what.clone(),
            Error::Internal => format!(
                "Internal error in yc-metadata-token while fetching from {url}; please report it."
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_transient_failures() {
        assert!(Error::Unreachable("connection refused").is_retryable());
        assert!(Error::Timeout.is_retryable());
        for status in [429, 500, 502, 503, 504] {
            assert!(Error::Status(status).is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 405, 410] {
            assert!(!Error::Status(status).is_retryable(), "{status}");
        }
        assert!(!Error::NoServiceAccount.is_retryable());
        assert!(!Error::BadResponse("x".into()).is_retryable());
        assert!(!Error::Internal.is_retryable());
    }

    #[test]
    fn messages_name_the_url_and_a_hint() {
        let url = "http://127.0.0.1:1/computeMetadata/v1/instance/service-accounts/default/token";
        let m = Error::Unreachable("connection refused").describe(url, 5);
        assert!(
            m.contains(url) && m.contains("after 5 attempts") && m.contains("YC_METADATA_ADDR")
        );
        assert!(Error::NoServiceAccount
            .describe(url, 1)
            .contains("attach one"));
        assert!(Error::Status(503).describe(url, 1).contains("HTTP 503"));
        assert_eq!(Error::Status(503).status(), Some(503));
    }

    /// Yandex Cloud answers 404 in Cloud Functions and 400 on VMs when the GCE-compatible
    /// endpoint is turned off: a 404 without Metadata-Flavor, a 400 and a 404 with it each name
    /// that cause beside their own, with the setting of each product.
    #[test]
    fn a_disabled_endpoint_is_named_where_it_can_be_the_cause() {
        let url =
            "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token";
        let not_metadata = crate::fetch::classify_status(404, false).unwrap_err();
        let bad_request = crate::fetch::classify_status(400, true).unwrap_err();
        let no_account = crate::fetch::classify_status(404, true).unwrap_err();
        assert_eq!(not_metadata.code(), "ERR_METADATA_BAD_RESPONSE");
        assert_eq!(bad_request.code(), "ERR_METADATA_STATUS");
        assert_eq!(bad_request.status(), Some(400));
        for e in [&not_metadata, &bad_request, &no_account] {
            assert!(!e.is_retryable(), "{e:?}");
            let m = e.describe(url, 1);
            for setting in [
                "Cloud Functions",
                "Serverless Containers",
                "VM",
                "gceHttpEndpoint",
                "gce-http-endpoint",
                "gceHttpToken",
                "gce-http-token",
            ] {
                assert!(m.contains(setting), "{setting}: {m}");
            }
        }
        for e in [&not_metadata, &bad_request] {
            let m = e.describe(url, 1);
            assert!(m.contains("not a metadata service"), "{m}");
            assert!(m.contains("YC_METADATA_ADDR"), "{m}");
        }
        assert!(no_account.describe(url, 1).contains("attach one"));
    }
}
