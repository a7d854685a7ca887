//! Validated names: topics and consumer groups.
//!
//! Parse, don't validate: a [`TopicName`] can only be built from a string that
//! passed the rules of the contract, so code that holds one may use it as a
//! path component.

use std::fmt;

/// The longest name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{kind} name is empty")]
    Empty {
        /// "topic" or "group".
        kind: &'static str,
    },
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("{kind} name is {len} bytes long, the limit is {MAX_NAME_LEN}")]
    TooLong {
        /// "topic" or "group".
        kind: &'static str,
        /// The length that was given.
        len: usize,
    },
    /// The name starts with `.`.
    #[error("{kind} name {name:?} starts with '.'")]
    LeadingDot {
        /// "topic" or "group".
        kind: &'static str,
        /// The name, lossily decoded.
        name: String,
    },
    /// The name holds a byte outside `[A-Za-z0-9._-]`.
    #[error("{kind} name {name:?} has {byte:?} at byte {index}; allowed are A-Z a-z 0-9 . _ -")]
    BadByte {
        /// "topic" or "group".
        kind: &'static str,
        /// The name, lossily decoded.
        name: String,
        /// The first offending byte, as a char when it is ASCII.
        byte: char,
        /// Its position.
        index: usize,
    },
}

fn check(kind: &'static str, name: &[u8]) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            len: name.len(),
        });
    }
    let lossy = || String::from_utf8_lossy(name).into_owned();
    if name[0] == b'.' {
        return Err(NameError::LeadingDot {
            kind,
            name: lossy(),
        });
    }
    if let Some(index) = name
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
    {
        let b = name[index];
        let byte = if b.is_ascii() {
            b as char
        } else {
            char::REPLACEMENT_CHARACTER
        };
        return Err(NameError::BadByte {
            kind,
            name: lossy(),
            byte,
            index,
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            /// Checks `name` against the naming rules.
            ///
            /// # Errors
            /// [`NameError`] naming the rule that `name` breaks.
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                check($kind, name.as_bytes())?;
                Ok(Self(name))
            }

            /// Checks raw bytes (as they arrive from a peer) against the naming rules.
            ///
            /// # Errors
            /// [`NameError`] naming the rule that `name` breaks.
            pub fn from_bytes(name: &[u8]) -> Result<Self, NameError> {
                check($kind, name)?;
                // The check admits ASCII only, so this cannot fail; map it anyway
                // rather than unwrap on peer bytes.
                let s = std::str::from_utf8(name).map_err(|_| NameError::Empty { kind: $kind })?;
                Ok(Self(s.to_owned()))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $ty {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }
    };
}

name_type!(
    /// A topic name: 1-255 bytes of `[A-Za-z0-9._-]`, not starting with `.`.
    ///
    /// ```
    /// use fanlog_protocol::TopicName;
    /// assert!(TopicName::new("orders.eu-1").is_ok());
    /// assert!(TopicName::new("../etc").is_err());
    /// ```
    TopicName,
    "topic"
);

name_type!(
    /// A consumer group name, under the same rules as a [`TopicName`].
    GroupName,
    "group"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_contract_alphabet() {
        for ok in ["a", "A.b_c-d", "0", "x..y", "a.", &"z".repeat(255)] {
            assert!(TopicName::new(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        let long = "z".repeat(256);
        for bad in [
            "", "../x", ".hidden", "a/b", "a\0b", "a b", "é", "a\\b", &long,
        ] {
            let err = TopicName::new(bad).unwrap_err();
            assert!(!err.to_string().is_empty());
        }
        assert!(matches!(
            TopicName::new("..").unwrap_err(),
            NameError::LeadingDot { .. }
        ));
        assert!(matches!(
            TopicName::new(long).unwrap_err(),
            NameError::TooLong { len: 256, .. }
        ));
        assert!(matches!(
            TopicName::from_bytes(b"ok\xff").unwrap_err(),
            NameError::BadByte { index: 2, .. }
        ));
    }

    #[test]
    fn group_names_follow_the_same_rules() {
        assert!(GroupName::new("workers-1").is_ok());
        let err = GroupName::new("a/b").unwrap_err();
        assert!(err.to_string().starts_with("group name"), "{err}");
    }
}
