//! The frame decoder on arbitrary bytes: never panics, never claims more
//! bytes than it was given, and what it decodes re-encodes to the same bytes.
#![no_main]

use fanlog_protocol::frame::{self, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((id, f, used))) = frame::decode(rest, 1 << 20) {
        assert!(used <= rest.len());
        if let Frame::Deliver { records, .. } | Frame::Fetched { records, .. } = &f {
            for r in records.iter() {
                if let Ok((view, _)) = r {
                    let _ = (view.payload(), view.key(), view.meta(), view.producer());
                }
            }
        }
        let mut again = Vec::new();
        if f.encode(id, &mut again).is_ok() {
            assert_eq!(again, &rest[..used], "re-encoding differs");
        }
        rest = &rest[used..];
    }
});
