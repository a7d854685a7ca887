//! CloudEvents validation on arbitrary bytes (what `POST .../messages`
//! takes with `application/cloudevents+json`): never panics, and what it
//! accepts survives the structured form a hook receives.
#![no_main]

use fanlog_server::cloudevents::{
    attribute_kinds, attributes, from_structured, structured_with_kinds,
};
use libfuzzer_sys::fuzz_target;

fn same_data(a: &[u8], b: &[u8]) -> bool {
    a == b
        || matches!(
            (serde_json::from_slice::<serde_json::Value>(a), serde_json::from_slice::<serde_json::Value>(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

fuzz_target!(|data: &[u8]| {
    let Ok(first) = from_structured(data) else {
        return;
    };
    let headers: Vec<(String, Vec<u8>)> = first
        .headers
        .iter()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    let rebuilt = structured_with_kinds(
        &attributes(&headers),
        &attribute_kinds(&headers),
        first.content_type.as_deref(),
        &first.data,
    );
    let second = from_structured(&rebuilt).expect("a rebuilt event is valid");
    assert_eq!(second.content_type, first.content_type);
    assert!(same_data(&first.data, &second.data));
    let mut a = first.headers.clone();
    let mut b = second.headers.clone();
    a.sort_by(|x, y| x.name.cmp(&y.name));
    b.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(a, b);
});
