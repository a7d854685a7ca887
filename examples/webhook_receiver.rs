//! A webhook receiver that verifies Standard Webhooks signatures before it
//! trusts a delivery, and deduplicates by `webhook-id` (delivery is at
//! least once).
//!
//! ```sh
//! cargo run --example webhook_receiver -- 127.0.0.1:9000 whsec_...
//! fanlog serve --allow-hook-target 127.0.0.1 &
//! curl -X POST localhost:7480/hooks -d '{"topic": "orders", "url": "http://127.0.0.1:9000/hook", "secret": "whsec_..."}'
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Deliveries older or newer than this are refused (replay protection).
const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Whether `headers` carry a valid signature of `body` by `secret`
/// (`whsec_` + base64 key): one of the space-separated `v1,SIG` entries
/// must be base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
fn verify(secret: &str, headers: &HeaderMap, body: &[u8], now: SystemTime) -> Result<(), String> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("no {name} header"))
    };
    let (id, timestamp, signatures) = (
        get("webhook-id")?,
        get("webhook-timestamp")?,
        get("webhook-signature")?,
    );
    let sent: u64 = timestamp.parse().map_err(|_| "bad timestamp".to_owned())?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    if now.abs_diff(sent) > TOLERANCE.as_secs() {
        return Err("timestamp outside the tolerance".into());
    }
    let key = STANDARD
        .decode(
            secret
                .strip_prefix("whsec_")
                .ok_or("secret without whsec_")?,
        )
        .map_err(|_| "secret is not base64".to_owned())?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
    for entry in signatures.split(' ') {
        if let Some(sig) = entry.strip_prefix("v1,")
            && let Ok(sig) = STANDARD.decode(sig)
            // Constant-time comparison.
            && ring::hmac::verify(&key, &signed, &sig).is_ok()
        {
            return Ok(());
        }
    }
    Err("no valid signature".into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9000".into());
    let secret = args
        .next()
        .ok_or("usage: webhook_receiver ADDR whsec_SECRET")?;
    // The spec's published example must verify with this code.
    let mut example = HeaderMap::new();
    example.insert("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".parse()?);
    example.insert("webhook-timestamp", "1614265330".parse()?);
    example.insert(
        "webhook-signature",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".parse()?,
    );
    verify(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        &example,
        br#"{"test": 2432232314}"#,
        UNIX_EPOCH + Duration::from_secs(1614265330),
    )?;

    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (secret, seen) = (secret.clone(), seen.clone());
            async move {
                if let Err(why) = verify(&secret, &headers, &body, SystemTime::now()) {
                    eprintln!("refused: {why}");
                    return StatusCode::UNAUTHORIZED;
                }
                let id = headers["webhook-id"]
                    .to_str()
                    .unwrap_or_default()
                    .to_owned();
                if seen
                    .lock()
                    .map(|mut s| s.insert(id.clone()))
                    .unwrap_or(false)
                {
                    println!("{id}\t{}", String::from_utf8_lossy(&body));
                }
                // 2xx moves the hook's cursor; anything else is retried.
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
