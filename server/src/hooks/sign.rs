//! Standard Webhooks signatures.
//!
//! A secret is `whsec_` + base64 of the key bytes. The signature of a
//! delivery is `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
//! A receiver verifies any one of the space-separated signatures in the
//! `webhook-signature` header, which is how a rotated secret keeps working
//! during its grace period.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    text: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Parses `whsec_BASE64`; the key must be 24 to 64 bytes.
    ///
    /// # Errors
    /// A description of what is wrong with `text`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let b64 = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| format!("a secret starts with {SECRET_PREFIX}"))?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| "the secret after whsec_ is not base64".to_owned())?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "the secret's key is {} bytes; it must be 24 to 64",
                key.len()
            ));
        }
        Ok(Self {
            text: text.to_owned(),
            key,
        })
    }

    /// A new random secret (32 bytes).
    #[must_use]
    pub fn generate() -> Self {
        let key: [u8; 32] = rand::random();
        Self {
            text: format!("{SECRET_PREFIX}{}", STANDARD.encode(key)),
            key: key.to_vec(),
        }
    }

    /// The `whsec_...` form.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `v1,BASE64` for one delivery.
    #[must_use]
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.key);
        let mut ctx = ring::hmac::Context::with_key(&key);
        ctx.update(id.as_bytes());
        ctx.update(b".");
        ctx.update(timestamp.to_string().as_bytes());
        ctx.update(b".");
        ctx.update(body);
        format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples published with the Standard Webhooks specification.
    #[test]
    fn matches_the_specification_examples() {
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            s.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let s = Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            s.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn generated_secrets_parse_and_bad_ones_do_not() {
        let g = Secret::generate();
        assert_eq!(Secret::parse(g.as_str()).unwrap(), g);
        assert_ne!(Secret::generate(), g);
        for bad in [
            "",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_c2hvcnQ=",
        ] {
            assert!(Secret::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{g:?}"), "Secret(..)");
    }
}
