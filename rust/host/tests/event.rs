// SPDX-License-Identifier: GPL-2.0

//! The `/dev/migtime` record: encoding and parsing agree, for the full record and for the ABI v1
//! prefix a reader with a 64-byte buffer gets.

use migtime_abi::abi::Timing;
use migtime_abi::event::{Event, EVENT_BYTES, EVENT_V1_BYTES};
use proptest::prelude::*;

fn event() -> impl Strategy<Value = Event> {
    (
        any::<[u64; 2]>(),
        any::<[u32; 2]>(),
        any::<[i64; 5]>(),
        any::<[i64; 3]>(),
        any::<[u32; 3]>(),
    )
        .prop_map(|(u, f, i, t, tu)| Event {
            event: u[0],
            migration_seq: u[1],
            page_flags: f[0],
            outcome: f[1],
            intended_ns: i[0],
            applied_ns: i[1],
            residual_ns: i[2],
            realtime_ns: i[3],
            monotonic_ns: i[4],
            timing: Timing {
                wake_mono_ns: t[0],
                work_mono_ns: t[1],
                done_mono_ns: t[2],
                wake_source: tu[0],
                step_method: tu[1],
                sets: tu[2],
                ..Timing::default()
            },
        })
}

proptest! {
    #[test]
    fn full_record_round_trips(ev in event()) {
        prop_assert_eq!(Event::from_le_bytes(&ev.to_le_bytes()), Some(ev));
    }

    #[test]
    fn v1_prefix_keeps_the_v1_fields(ev in event()) {
        let b = ev.to_le_bytes();
        let p = Event::from_le_bytes(&b[..EVENT_V1_BYTES]).unwrap();
        prop_assert_eq!(p, Event { timing: Timing::default(), ..ev });
    }
}

#[test]
fn other_lengths_are_refused() {
    for n in [
        0,
        EVENT_V1_BYTES - 1,
        EVENT_V1_BYTES + 1,
        EVENT_BYTES - 1,
        EVENT_BYTES + 1,
    ] {
        assert_eq!(Event::from_le_bytes(&vec![0u8; n]), None, "{n} bytes");
    }
}
