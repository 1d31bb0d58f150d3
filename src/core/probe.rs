//! Is a GCE-compatible metadata service there (isAvailable), sans I/O: the probe, what its answer
//! means, and the answer remembered. The driver sends what a `Step` asks on a connection of its
//! own and reports how the attempt ended.
//!
//! The probe is `GET /computeMetadata/v1/` with `Metadata-Flavor: Google` (the request every key
//! and the token share, fetch.rs), and the answer is yes when its head carries
//! `Metadata-Flavor: Google`, whatever its status: the service sets it on every answer, a 403 or
//! 404 included, and nothing else does. Its body is never read.
//!
//! Off-cloud it answers no fast: a refused connection, no route, a name that does not exist, a
//! peer that is not HTTP or an answer without the header end it at once; a black hole ends it when
//! the probe's time is up (`DEFAULT_PROBE_TIMEOUT`). The one second try is for a connection that
//! took the request and then closed or broke before a head: a service restarting, not an empty
//! address. A yes is remembered for the life of the process (a metadata service does not leave a
//! running VM or container); a no for `NEGATIVE_FOR`, so a service that comes up late in a
//! container's first seconds is seen soon after.

use crate::cache::Stamp;
use crate::config::{self, Environment, OptionValue, Settings};
use crate::error::Error;
use crate::fetch::Transport;
use crate::http1::{Broken, Event, Response};
use crate::retry::{Attempts, Backoff, Policy};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

/// What is asked for: the root of the GCE-format tree, which every key shares.
pub const PROBE_PATH: &str = "/computeMetadata/v1/";
/// The whole probe, both tries: a link-local service answers in a millisecond or two, so this is
/// all a black hole gets, and it stays under the half second users expect of a "no".
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(400);
/// A no is asked again after this: long enough that a burst of libraries starting up shares one
/// probe, short enough that a service that came up late is seen within seconds.
pub const NEGATIVE_FOR: Duration = Duration::from_secs(5);
/// The first try and the one quick second try (see the module note).
const MAX_PROBE_ATTEMPTS: u32 = 2;

/// The settings isAvailable's options ask for (host, and `timeoutMs`: the whole probe's time), or
/// why they cannot be used.
pub fn probe_settings(
    options: &[(String, OptionValue)],
    env: &Environment,
) -> Result<Settings, Error> {
    let mut timed = false;
    for (name, value) in options {
        match name.as_str() {
            _ if *value == OptionValue::Absent => {}
            "host" => {}
            "timeoutMs" => timed = true,
            _ => {
                return Err(Error::InvalidOption(format!(
                    "unknown option {name:?} of isAvailable; its options are host and timeoutMs"
                )))
            }
        }
    }
    let mut settings = config::settings(options, env)?;
    if !timed {
        settings.timeout = DEFAULT_PROBE_TIMEOUT;
    }
    Ok(settings)
}

/// A reader for the probe's answer: only its head is read, so no body is held.
pub fn new_answer() -> Response {
    Response::new(0)
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// A whole head arrived; `from_metadata`: it carries `Metadata-Flavor: Google`.
    Answered { from_metadata: bool },
    /// It failed below HTTP, as fetch.rs names the ways (not HTTP included).
    Failed(Transport),
    /// The probe's time ran out.
    TimedOut,
}

/// What the answer's bytes so far say: nothing yet (None), or how the attempt ended.
pub fn read_head(response: &mut Response) -> Option<Attempt> {
    match response.next() {
        Ok(Event::More) => None,
        Ok(Event::Head { from_metadata, .. }) => Some(Attempt::Answered { from_metadata }),
        // A body only ever follows its head, which ended the attempt.
        Ok(Event::Body { .. }) | Err(Broken::NotHttp | Broken::TooLarge) => {
            Some(Attempt::Failed(Transport::NotHttp))
        }
        Err(Broken::Closed) => Some(Attempt::Failed(Transport::Closed)),
    }
}

/// What the driver does next for the probe under way.
#[derive(Debug)]
pub enum Step<W> {
    /// Send one attempt with this timeout, then report how it ended (`attempt_ended`).
    Send { timeout: Duration },
    /// The probe is over: hand `available` to these waiters.
    Done {
        available: bool,
        // The wasm driver keeps its waiters itself.
        #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
        waiters: Vec<W>,
    },
}

/// How `ask` answered a caller.
#[derive(Debug)]
pub enum Asked<W> {
    /// From what is remembered; the waiter comes back to be answered at once.
    Known(bool, W),
    /// The waiter joined the probe and is handed its answer when that ends.
    Joined,
}

/// The probe of one address: its answer is the address's, whatever time a caller gives it.
#[derive(Debug)]
pub struct Probe<W> {
    /// The last answer and when it came.
    known: Option<(bool, Stamp)>,
    flight: Option<(Attempts, Vec<W>)>,
}

impl<W> Default for Probe<W> {
    fn default() -> Probe<W> {
        Probe {
            known: None,
            flight: None,
        }
    }
}

impl<W> Probe<W> {
    /// The answer for `waiter`: remembered, else when the probe under way (or one started now
    /// with `timeout` for all of it, whose first step is returned) ends. Any number of callers
    /// share one probe.
    pub fn ask(&mut self, now: Stamp, timeout: Duration, waiter: W) -> (Asked<W>, Option<Step<W>>) {
        if let Some(available) = self.known(&now) {
            return (Asked::Known(available, waiter), None);
        }
        if let Some((_, waiters)) = self.flight.as_mut() {
            waiters.push(waiter);
            return (Asked::Joined, None);
        }
        let policy = Policy {
            max_attempts: MAX_PROBE_ATTEMPTS,
            timeout,
            deadline: timeout,
            // Unused: the second try goes at once (attempt_ended).
            backoff: Backoff::DEFAULT,
        };
        let mut attempts = Attempts::new(policy, now.mono);
        let first = attempts.start_attempt(now.mono);
        self.flight = Some((attempts, alloc::vec![waiter]));
        let step = match first {
            Ok(timeout) => Step::Send { timeout },
            Err(_) => self.finish(now, false),
        };
        (Asked::Joined, Some(step))
    }

    fn known(&self, now: &Stamp) -> Option<bool> {
        match self.known {
            Some((true, _)) => Some(true),
            Some((false, at)) if now.since(&at) < NEGATIVE_FOR => Some(false),
            _ => None,
        }
    }

    /// The attempt under way ended so.
    pub fn attempt_ended(&mut self, now: Stamp, attempt: Attempt) -> Step<W> {
        let Some((attempts, _)) = self.flight.as_mut() else {
            return Step::Done {
                available: false,
                waiters: Vec::new(),
            };
        };
        let available = match attempt {
            Attempt::Answered { from_metadata } => from_metadata,
            Attempt::Failed(Transport::Closed | Transport::Reset)
                if attempts.made() < MAX_PROBE_ATTEMPTS =>
            {
                match attempts.start_attempt(now.mono) {
                    Ok(timeout) => return Step::Send { timeout },
                    Err(_) => false,
                }
            }
            Attempt::Failed(_) | Attempt::TimedOut => false,
        };
        self.finish(now, available)
    }

    /// The driver lost the probe (a panic): its waiters, to be told of an internal error. Nothing
    /// is remembered, so the next caller probes again.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the native driver's: wasm aborts
    pub fn abandon(&mut self) -> Vec<W> {
        self.flight.take().map(|(_, w)| w).unwrap_or_default()
    }

    fn finish(&mut self, now: Stamp, available: bool) -> Step<W> {
        let waiters = self.flight.take().map(|(_, w)| w).unwrap_or_default();
        self.known = Some((available, now));
        Step::Done { available, waiters }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Stamp {
        Stamp {
            mono: Duration::from_millis(ms),
            wall: Duration::from_millis(1_700_000_000_000 + ms),
        }
    }

    fn probe() -> Probe<u32> {
        Probe::default()
    }

    /// Asks with the default probe time.
    fn ask(p: &mut Probe<u32>, at: Stamp, waiter: u32) -> (Asked<u32>, Option<Step<u32>>) {
        p.ask(at, DEFAULT_PROBE_TIMEOUT, waiter)
    }

    fn head(bytes: &[u8], eof: bool) -> Option<Attempt> {
        let mut r = new_answer();
        r.feed(bytes);
        if eof {
            r.eof();
        }
        read_head(&mut r)
    }

    #[test]
    fn yes_only_with_the_flavor_header_whatever_the_status() {
        let answered = |from_metadata| Some(Attempt::Answered { from_metadata });
        for status in ["200 OK", "403 Forbidden", "404 Not Found", "301 Moved"] {
            let bytes = format!("HTTP/1.1 {status}\r\nMetadata-Flavor: Google\r\n\r\n");
            assert_eq!(head(bytes.as_bytes(), false), answered(true), "{status}");
        }
        // The head is enough: a body the cap would refuse is never read.
        let long =
            b"HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Length: 99999999\r\n\r\n";
        assert_eq!(head(long, false), answered(true));
        assert_eq!(
            head(b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n", false),
            answered(false)
        );
        assert_eq!(
            head(b"HTTP/1.1 200 OK\r\nMetadata-Flavor: Other\r\n\r\n", false),
            answered(false)
        );
        assert_eq!(head(b"HTTP/1.1 200 OK\r\nMetadata-Fl", false), None);
        assert_eq!(
            head(b"SSH-2.0-OpenSSH_9.6\r\n", false),
            Some(Attempt::Failed(Transport::NotHttp))
        );
        assert_eq!(
            head(b"HTTP/1.1 200 OK\r\n", true),
            Some(Attempt::Failed(Transport::Closed))
        );
    }

    #[test]
    fn options_are_host_and_the_probe_time() {
        let env = Environment::default();
        let s = probe_settings(&[], &env).unwrap();
        assert_eq!(
            (s.host.as_str(), s.timeout),
            ("169.254.169.254", DEFAULT_PROBE_TIMEOUT)
        );
        let s = probe_settings(
            &[
                ("host".into(), OptionValue::Text("127.0.0.1:1".into())),
                ("timeoutMs".into(), OptionValue::Number(50.0)),
            ],
            &env,
        )
        .unwrap();
        assert_eq!(
            (s.host.as_str(), s.timeout),
            ("127.0.0.1:1", Duration::from_millis(50))
        );
        for (name, value, why) in [
            (
                "deadlineMs",
                OptionValue::Number(1.0),
                "unknown option \"deadlineMs\"",
            ),
            ("timeoutMs", OptionValue::Number(0.0), "timeoutMs"),
            ("host", OptionValue::Bool(true), "got boolean"),
        ] {
            match probe_settings(&[(name.into(), value)], &env) {
                Err(Error::InvalidOption(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn any_number_of_callers_share_one_probe_and_its_answer_is_remembered() {
        let mut p = probe();
        let (asked, step) = ask(&mut p, at(0), 0);
        assert!(matches!(asked, Asked::Joined));
        let Some(Step::Send { timeout }) = step else {
            panic!("no probe")
        };
        assert_eq!(timeout, DEFAULT_PROBE_TIMEOUT);
        for id in 1..999 {
            assert!(matches!(ask(&mut p, at(1), id), (Asked::Joined, None)));
        }
        // A caller with a time of its own joins too: the answer is the address's.
        let quick = p.ask(at(1), Duration::from_millis(50), 999);
        assert!(matches!(quick, (Asked::Joined, None)));
        let answered = Attempt::Answered {
            from_metadata: true,
        };
        match p.attempt_ended(at(2), answered) {
            Step::Done { available, waiters } => {
                assert!(available);
                assert_eq!(waiters, (0..1000).collect::<Vec<_>>());
            }
            other => panic!("{other:?}"),
        }
        // A yes holds for the life of the process.
        let much_later = at(86_400_000);
        assert!(matches!(
            ask(&mut p, much_later, 7),
            (Asked::Known(true, 7), None)
        ));
    }

    #[test]
    fn a_no_is_remembered_for_a_short_time() {
        let mut p = probe();
        let _ = ask(&mut p, at(0), 0);
        let refused = Attempt::Failed(Transport::Refused);
        assert!(matches!(
            p.attempt_ended(at(1), refused),
            Step::Done {
                available: false,
                ..
            }
        ));
        let within = 1 + NEGATIVE_FOR.as_millis() as u64 - 1;
        assert!(matches!(
            ask(&mut p, at(within), 1),
            (Asked::Known(false, 1), None)
        ));
        // Suspended time counts too: the wall clock moved on while the monotonic one stood.
        let suspended = Stamp {
            mono: Duration::from_millis(2),
            wall: at(1).wall + NEGATIVE_FOR,
        };
        assert!(matches!(
            ask(&mut p, suspended, 2),
            (Asked::Joined, Some(_))
        ));
    }

    #[test]
    fn one_quick_second_try_only_for_a_connection_that_broke() {
        for failure in [Transport::Closed, Transport::Reset] {
            let mut p = probe();
            let _ = ask(&mut p, at(0), 0);
            // Right away, with what is left of the probe's time.
            let Step::Send { timeout } = p.attempt_ended(at(100), Attempt::Failed(failure)) else {
                panic!("{failure:?}: no second try")
            };
            assert_eq!(timeout, DEFAULT_PROBE_TIMEOUT - Duration::from_millis(100));
            // And no third.
            assert!(matches!(
                p.attempt_ended(at(101), Attempt::Failed(failure)),
                Step::Done {
                    available: false,
                    ..
                }
            ));
        }
        for failure in [
            Attempt::Failed(Transport::Refused),
            Attempt::Failed(Transport::NoRoute),
            Attempt::Failed(Transport::NameNotFound),
            Attempt::Failed(Transport::NotHttp),
            Attempt::TimedOut,
            Attempt::Answered {
                from_metadata: false,
            },
        ] {
            let mut p = probe();
            let _ = ask(&mut p, at(0), 0);
            assert!(
                matches!(
                    p.attempt_ended(at(1), failure),
                    Step::Done {
                        available: false,
                        ..
                    }
                ),
                "{failure:?}"
            );
        }
        // No second try once the probe's time is spent.
        let mut p = probe();
        let _ = ask(&mut p, at(0), 0);
        let spent = DEFAULT_PROBE_TIMEOUT.as_millis() as u64;
        assert!(matches!(
            p.attempt_ended(at(spent), Attempt::Failed(Transport::Closed)),
            Step::Done {
                available: false,
                ..
            }
        ));
    }

    #[test]
    fn a_lost_probe_remembers_nothing() {
        let mut p = probe();
        let _ = ask(&mut p, at(0), 0);
        let _ = ask(&mut p, at(0), 1);
        assert_eq!(p.abandon(), [0, 1]);
        assert!(matches!(ask(&mut p, at(1), 2), (Asked::Joined, Some(_))));
    }
}
