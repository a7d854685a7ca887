//! The record parser on arbitrary bytes (what recovery reads from a damaged
//! segment): never panics, accessors stay in bounds.
#![no_main]

use fanlog_protocol::record::RecordView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for parse in [RecordView::parse, RecordView::parse_trusted] {
        if let Ok((view, used)) = parse(data) {
            assert!(used <= data.len());
            let _ = (view.seq(), view.payload(), view.key(), view.meta(), view.producer());
        }
    }
    if let Ok(view) = RecordView::parse_trusted_unpadded(data) {
        let _ = (view.payload(), view.meta());
    }
});
