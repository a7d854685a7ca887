//! A bench subscriber's view of a topic over each transport, as one stream
//! shape: the native client (TCP, QUIC) and the browser edges (Server-Sent
//! Events, WebSocket) as a browser would use them.
//!
//! Stamped payloads carry their scheduled send time as 16 lowercase hex
//! digits, then `x` filler: text, so that the browser edges deliver them
//! as-is rather than base64-encoded, and the same on every transport.

use std::borrow::Cow;
use std::pin::Pin;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use eventsource_stream::Eventsource;
use fanlog::client::{Client, Event, StartFrom};
use futures_util::{Stream, StreamExt};

/// One item a subscriber sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Got {
    /// A message; its stamp (ns since the run's base) when asked for.
    Msg(Option<u64>),
    /// Messages `from..to` were removed by retention.
    Gap { from: u64, to: u64 },
}

pub(super) type Feed = Pin<Box<dyn Stream<Item = anyhow::Result<Got>> + Send>>;

/// Digits of the stamp at the start of a stamped payload.
pub(super) const STAMP_LEN: usize = 16;

/// A payload of `size` bytes (at least [`STAMP_LEN`]) stamped with `ns`.
pub(super) fn stamped(size: usize, ns: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.extend_from_slice(format!("{ns:016x}").as_bytes());
    b.resize(size.max(STAMP_LEN), b'x');
    b.freeze()
}

/// The stamp of a payload made by [`stamped`].
pub(super) fn stamp_of(payload: &[u8]) -> anyhow::Result<u64> {
    let digits = payload
        .get(..STAMP_LEN)
        .and_then(|d| std::str::from_utf8(d).ok())
        .context("payload is not stamped")?;
    u64::from_str_radix(digits, 16).context("payload is not stamped")
}

/// Where a feed starts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Start {
    /// The first message published after the feed is open.
    Live,
    /// This seq.
    At(u64),
}

/// A subscription through the native client (which it keeps open).
pub(super) async fn native(
    client: Client,
    topic: &str,
    start: Start,
    stamped: bool,
) -> anyhow::Result<Feed> {
    let from = match start {
        Start::Live => StartFrom::Latest,
        Start::At(seq) => StartFrom::Seq(seq),
    };
    let sub = client.subscribe(topic, from).await?;
    Ok(Box::pin(sub.map(move |ev| {
        // The subscription ends with its client: keep it alive here.
        let _client = &client;
        match ev {
            Ok(Event::Record(d)) if stamped => Ok(Got::Msg(Some(stamp_of(d.payload())?))),
            Ok(Event::Record(_)) => Ok(Got::Msg(None)),
            Ok(Event::Gap { from, to }) => Ok(Got::Gap { from, to }),
            Err(e) => Err(anyhow::Error::new(e).context("subscription failed")),
        }
    })))
}

/// `base` (`http://HOST:PORT`) with the path `/topics/{topic}/{leaf}`.
fn topic_url(base: &str, topic: &str, leaf: &str) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(base).with_context(|| format!("bad HTTP address {base}"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("bad HTTP address {base}"))?
        .clear()
        .extend(["topics", topic, leaf]);
    Ok(url)
}

#[derive(serde::Deserialize)]
struct GapJson {
    from: u64,
    to: u64,
}

/// A Server-Sent Events stream, parsed as `EventSource` would.
pub(super) async fn sse(
    http: &reqwest::Client,
    base: &str,
    topic: &str,
    start: Start,
    stamped: bool,
) -> anyhow::Result<Feed> {
    let mut url = topic_url(base, topic, "events")?;
    if let Start::At(seq) = start {
        url.query_pairs_mut().append_pair("from", &seq.to_string());
    }
    // The handler subscribes before it answers: once the headers are in,
    // every later message is on this stream.
    let resp = http
        .get(url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .context("cannot open the event stream")?
        .error_for_status()?;
    Ok(Box::pin(resp.bytes_stream().eventsource().map(move |ev| {
        let ev = ev.context("event stream failed")?;
        match ev.event.as_str() {
            "gap" => {
                let g: GapJson = serde_json::from_str(&ev.data).context("bad gap event")?;
                Ok(Got::Gap {
                    from: g.from,
                    to: g.to,
                })
            }
            _ if stamped => Ok(Got::Msg(Some(stamp_of(ev.data.as_bytes())?))),
            _ => Ok(Got::Msg(None)),
        }
    })))
}

/// The frames the WebSocket edge sends that a subscriber reads.
#[derive(serde::Deserialize)]
struct WsFrame<'a> {
    seq: Option<u64>,
    #[serde(borrow)]
    data: Option<Cow<'a, str>>,
    gap: Option<GapJson>,
}

/// A WebSocket subscription, read as a page's `WebSocket` would.
pub(super) async fn ws(
    base: &str,
    topic: &str,
    start: Start,
    stamped: bool,
) -> anyhow::Result<Feed> {
    use tokio_tungstenite::tungstenite::Message as Ws;
    let mut url = topic_url(base, topic, "ws")?;
    url.set_scheme("ws")
        .map_err(|()| anyhow::anyhow!("bad HTTP address {base}"))?;
    if let Start::At(seq) = start {
        url.query_pairs_mut().append_pair("from", &seq.to_string());
    }
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
        .await
        .context("cannot open the WebSocket")?;
    let frames = socket.filter_map(move |frame| async move {
        let text = match frame {
            Ok(Ws::Text(t)) => t,
            Ok(Ws::Close(c)) => {
                let why = c.map(|c| format!("{} {}", u16::from(c.code), c.reason));
                return Some(Err(anyhow::anyhow!(
                    "the broker closed the WebSocket: {}",
                    why.unwrap_or_default()
                )));
            }
            // Pings are answered by tungstenite itself.
            Ok(_) => return None,
            Err(e) => return Some(Err(anyhow::Error::new(e).context("WebSocket failed"))),
        };
        let parsed = (|| {
            let f: WsFrame<'_> = serde_json::from_str(text.as_str()).context("bad frame")?;
            Ok(match (f.seq, f.data, f.gap) {
                (_, _, Some(g)) => Some(Got::Gap {
                    from: g.from,
                    to: g.to,
                }),
                (Some(_), Some(d), _) if stamped => Some(Got::Msg(Some(stamp_of(d.as_bytes())?))),
                (Some(_), Some(_), _) => Some(Got::Msg(None)),
                // Acks and other replies.
                _ => None,
            })
        })();
        parsed.transpose()
    });
    Ok(Box::pin(frames))
}

/// Checks an HTTP edge answers before many connections are opened to it.
pub(super) async fn check_http(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let url = format!("{}/healthz", base.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("no HTTP edge at {base}"))?;
    if !resp.status().is_success() {
        bail!("{url} answered {}", resp.status());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_as_text() {
        for (size, ns) in [(16, 0u64), (64, 123_456_789), (1024, u64::MAX)] {
            let p = stamped(size, ns);
            assert_eq!(p.len(), size);
            assert!(std::str::from_utf8(&p).is_ok());
            assert_eq!(stamp_of(&p).unwrap(), ns);
        }
        assert!(stamp_of(b"short").is_err());
        assert!(stamp_of(&[0xA5; 32]).is_err());
    }

    #[test]
    fn topic_urls_are_escaped_segments() {
        let u = topic_url("http://127.0.0.1:7480", "a.b-c", "events").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:7480/topics/a.b-c/events");
    }
}
