//! Group commit of writes to one zone: while a write to a zone is on its way, the writes that
//! arrive for it wait, and then go together as one request (one RFC 2136 UPDATE, one Route 53
//! change batch). Idle, a write goes at once and alone: nothing waits for a timer. Under load,
//! 10,000 MailDomains make a few hundred requests instead of 10,000.
//!
//! Each write stays whole (one MailDomain's plan is never split over two requests). When a
//! combined request is refused for a reason that may be one write's fault (a name outside the
//! zone, a refused permission), its halves are sent again, down to single writes, so one bad
//! MailDomain does not fail the others; when the server is unreachable or rate limits us, every write gets that
//! error and nothing is sent again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::DnsError;

/// Sends one request with the writes given, in order, all or nothing.
pub type SendFn<T> =
    Arc<dyn Fn(String, Vec<T>) -> BoxFuture<'static, Result<(), DnsError>> + Send + Sync>;

/// The writes waiting per zone, and how they are sent.
pub struct Batches<T> {
    queues: Mutex<HashMap<String, Queue<T>>>,
    send: SendFn<T>,
    /// A request holds writes up to this total weight (and at least one write).
    max_weight: usize,
    weight: fn(&T) -> usize,
}

struct Queue<T> {
    /// A task is sending this zone's writes; new ones wait for it.
    busy: bool,
    waiting: Vec<(T, oneshot::Sender<Result<(), DnsError>>)>,
}

impl<T: Clone + Send + 'static> Batches<T> {
    pub fn new(send: SendFn<T>, max_weight: usize, weight: fn(&T) -> usize) -> Arc<Self> {
        Arc::new(Batches {
            queues: Mutex::new(HashMap::new()),
            send,
            max_weight,
            weight,
        })
    }

    /// Sends `write` to `zone`, alone or together with others, and returns its outcome. The
    /// sending runs in a task of its own, so a caller that goes away loses nothing for others.
    pub async fn submit(self: &Arc<Self>, zone: &str, write: T) -> Result<(), DnsError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut queues = self
                .queues
                .lock()
                .map_err(|_| DnsError::Server("the write queue is poisoned".into()))?;
            let queue = queues.entry(zone.to_owned()).or_insert_with(|| Queue {
                busy: false,
                waiting: Vec::new(),
            });
            queue.waiting.push((write, tx));
            !std::mem::replace(&mut queue.busy, true)
        };
        if start {
            tokio::spawn(self.clone().drain(zone.to_owned()));
        }
        rx.await
            .unwrap_or_else(|_| Err(DnsError::Server("the write was dropped unsent".into())))
    }

    /// Sends the zone's waiting writes, batch after batch, until none is left.
    async fn drain(self: Arc<Self>, zone: String) {
        loop {
            let batch = {
                let Ok(mut queues) = self.queues.lock() else {
                    return;
                };
                let Some(queue) = queues.get_mut(&zone) else {
                    return;
                };
                let mut total = 0;
                let take = queue
                    .waiting
                    .iter()
                    .take_while(|(w, _)| {
                        total += (self.weight)(w);
                        total <= self.max_weight
                    })
                    .count()
                    .max(1)
                    .min(queue.waiting.len());
                if take == 0 {
                    queues.remove(&zone);
                    return;
                }
                queue.waiting.drain(..take).collect::<Vec<_>>()
            };
            let (writes, senders): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
            for (result, tx) in self
                .send_batch(&zone, writes)
                .await
                .into_iter()
                .zip(senders)
            {
                // The caller may have gone away; its write was sent all the same.
                let _ = tx.send(result);
            }
        }
    }

    /// One request for all; when that is refused for a reason that may be one write's, each
    /// half again, down to single writes: a bad write among n costs about 2·log2(n) requests
    /// more, and fails alone.
    fn send_batch<'a>(
        &'a self,
        zone: &'a str,
        writes: Vec<T>,
    ) -> BoxFuture<'a, Vec<Result<(), DnsError>>> {
        Box::pin(async move {
            let n = writes.len();
            match (self.send)(zone.to_owned(), writes.clone()).await {
                Err(e) if n > 1 && !shared_cause(&e) => {
                    let mut first = writes;
                    let second = first.split_off(n / 2);
                    let mut results = self.send_batch(zone, first).await;
                    results.extend(self.send_batch(zone, second).await);
                    results
                }
                other => vec![other; n],
            }
        })
    }
}

/// Errors that are the server's or the connection's, not one write's: sending the writes
/// one by one would only fail the same way, n times.
fn shared_cause(error: &DnsError) -> bool {
    matches!(
        error,
        DnsError::Unreachable(_) | DnsError::RateLimited { .. } | DnsError::Auth(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A sender that records each request's writes, takes 20 ms, and refuses any request that
    /// holds the write `bad`.
    fn recorder(log: Arc<Mutex<Vec<Vec<u32>>>>, calls: Arc<AtomicUsize>) -> SendFn<u32> {
        Arc::new(move |_zone, writes: Vec<u32>| {
            let log = log.clone();
            let calls = calls.clone();
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let refused = writes.contains(&13);
                if let Ok(mut log) = log.lock() {
                    log.push(writes);
                }
                if refused {
                    Err(DnsError::Refused("13 is not allowed".into()))
                } else {
                    Ok(())
                }
            })
        })
    }

    #[tokio::test]
    async fn writes_that_arrive_while_one_is_sent_go_together() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let batches = Batches::new(recorder(log.clone(), calls.clone()), 100, |_| 1);
        let all = (100..150u32).map(|i| {
            let b = batches.clone();
            async move { b.submit("example.test", i).await }
        });
        let results = futures_util::future::join_all(all).await;
        assert!(results.iter().all(Result::is_ok));
        let log = log.lock().map(|l| l.clone()).unwrap_or_default();
        // All in one request, or the first alone (if its task started before the others
        // came) and the 49 others in a second.
        assert!(log.len() <= 2, "{log:?}");
        let mut sent: Vec<u32> = log.concat();
        sent.sort_unstable();
        assert_eq!(
            sent,
            (100..150).collect::<Vec<_>>(),
            "every write exactly once"
        );
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_the_maximum_weight() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let batches = Batches::new(recorder(log.clone(), calls), 10, |_| 4);
        let all = (0..9u32).map(|i| {
            let b = batches.clone();
            async move { b.submit("example.test", i).await }
        });
        futures_util::future::join_all(all).await;
        let log = log.lock().map(|l| l.clone()).unwrap_or_default();
        assert!(log.iter().all(|r| r.len() <= 2), "{log:?}");
        assert_eq!(log.iter().map(Vec::len).sum::<usize>(), 9);
    }

    #[tokio::test]
    async fn one_bad_write_fails_alone() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let batches = Batches::new(recorder(log, calls.clone()), 1000, |_| 1);
        // Held back until all are queued: one batch of 101 with one bad write.
        let all = (100..200u32).chain([13]).map(|i| {
            let b = batches.clone();
            async move { (i, b.submit("example.test", i).await) }
        });
        for (i, result) in futures_util::future::join_all(all).await {
            if i == 13 {
                assert!(matches!(result, Err(DnsError::Refused(_))), "{result:?}");
            } else {
                assert!(result.is_ok(), "{i}: {result:?}");
            }
        }
        let calls = calls.load(Ordering::SeqCst);
        assert!(
            calls <= 20,
            "{calls} requests: the bad write was not found by halving"
        );
    }

    #[tokio::test]
    async fn zones_are_sent_independently() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let batches = Batches::new(recorder(log.clone(), calls), 100, |_| 1);
        let all = (0..4u32).map(|i| {
            let b = batches.clone();
            async move { b.submit(&format!("z{i}.test"), i).await }
        });
        futures_util::future::join_all(all).await;
        let log = log.lock().map(|l| l.clone()).unwrap_or_default();
        assert_eq!(log.len(), 4, "one request per zone: {log:?}");
    }
}
