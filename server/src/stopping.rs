//! How an instance stops: the signals it counts, the drain period and the bound (see
//! [`crate::startup`]'s documentation for the whole sequence). Apart from the start-up
//! path because it is the part that runs at the other end of the process's life, and
//! the part with timing rules worth testing on their own.

use std::time::Duration;

use anyhow::{Result, bail};
use tokio::sync::watch;

use crate::config::Config;

/// What is kept, at most, of the shutdown bound for writing the usage counts and closing
/// the database once the requests in flight are done or cut.
const SHUTDOWN_RESERVE: Duration = Duration::from_secs(2);

/// How the instance stops (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopping {
    /// From the first signal until it stops accepting.
    pub(crate) drain: Duration,
    /// From the first signal until it has exited, whatever happens.
    pub(crate) timeout: Duration,
}

impl Stopping {
    pub(crate) fn from_config(config: &Config) -> Result<Self> {
        if config.shutdown_timeout_seconds <= config.drain_seconds {
            bail!(
                "MINITTER_SHUTDOWN_TIMEOUT_SECONDS ({}) must exceed MINITTER_DRAIN_SECONDS ({})",
                config.shutdown_timeout_seconds,
                config.drain_seconds
            );
        }
        Ok(Self {
            drain: Duration::from_secs(u64::from(config.drain_seconds)),
            timeout: Duration::from_secs(u64::from(config.shutdown_timeout_seconds)),
        })
    }

    /// How long the requests in flight get once the drain period is over: the rest of the
    /// bound, less a reserve for the usage counts (2 s, or half the rest if that is short).
    pub(crate) fn grace(self) -> Duration {
        let rest = self.timeout.saturating_sub(self.drain);
        rest.saturating_sub(SHUTDOWN_RESERVE.min(rest / 2))
    }
}

/// Counts the SIGTERMs and SIGINTs (Ctrl-C) the process receives from now on. The handlers
/// are installed before this returns; a task counts. One that cannot be installed is
/// logged and left to its default action (the process ends at once).
pub(crate) fn stop_signals() -> watch::Receiver<u32> {
    let (count, counted) = watch::channel(0_u32);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::error!(%error, signal = name, "cannot listen for the signal");
                None
            }
        };
        async fn next(signal: &mut Option<Signal>) -> Option<()> {
            match signal {
                Some(signal) => signal.recv().await,
                None => None,
            }
        }
        let mut term = listen(SignalKind::terminate(), "SIGTERM");
        let mut int = listen(SignalKind::interrupt(), "SIGINT");
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    Some(()) = next(&mut term) => "SIGTERM",
                    Some(()) = next(&mut int) => "SIGINT",
                    else => return,
                };
                count.send_modify(|n| *n += 1);
                tracing::info!(signal = name, "received");
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            count.send_modify(|n| *n += 1);
            tracing::info!(signal = "Ctrl-C", "received");
        }
    });
    counted
}

/// Until the first stop signal; forever if none can come any more.
pub(crate) async fn first_signal(signals: &mut watch::Receiver<u32>) {
    if signals.wait_for(|&n| n >= 1).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Once a stop has begun: until a second signal, or until `timeout` after the first.
/// Says which.
pub(crate) async fn cut_short(
    mut signals: watch::Receiver<u32>,
    timeout: Duration,
) -> &'static str {
    first_signal(&mut signals).await;
    let second = async {
        if signals.wait_for(|&n| n >= 2).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = second => "a second signal",
        () = tokio::time::sleep(timeout) => "the shutdown timeout was reached",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn requests_in_flight_get_the_bound_less_the_drain_and_a_reserve() {
        let stopping = |drain, timeout| Stopping {
            drain: Duration::from_secs(drain),
            timeout: Duration::from_secs(timeout),
        };
        assert_eq!(stopping(5, 20).grace(), Duration::from_secs(13));
        assert_eq!(stopping(0, 60).grace(), Duration::from_secs(58));
        // A short rest is halved between the requests and the counts.
        assert_eq!(stopping(1, 3).grace(), Duration::from_secs(1));
        assert_eq!(stopping(0, 1).grace(), Duration::from_millis(500));
    }

    #[tokio::test]
    async fn a_second_signal_cuts_a_stop_short() {
        let (count, counted) = watch::channel(0);
        let cut = tokio::spawn(cut_short(counted, Duration::from_secs(60)));
        count.send_replace(1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!cut.is_finished(), "one signal is an orderly stop");
        count.send_replace(2);
        let cause = tokio::time::timeout(Duration::from_secs(1), cut)
            .await
            .expect("at once")
            .expect("joined");
        assert_eq!(cause, "a second signal");
    }

    #[tokio::test]
    async fn the_bound_cuts_a_stop_short_counted_from_the_first_signal() {
        let (count, counted) = watch::channel(0);
        let cut = tokio::spawn(cut_short(counted, Duration::from_millis(200)));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!cut.is_finished(), "no stop has begun");
        let signalled = Instant::now();
        count.send_replace(1);
        let cause = tokio::time::timeout(Duration::from_secs(5), cut)
            .await
            .expect("at the bound")
            .expect("joined");
        assert_eq!(cause, "the shutdown timeout was reached");
        assert!(signalled.elapsed() >= Duration::from_millis(200));
    }
}
