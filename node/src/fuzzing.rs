//! Fuzz entry points for what a node decodes from its peers and its API
//! clients. Each takes any bytes and must never panic; a panic is a finding.
//! `fuzz/` (cargo-fuzz, nightly) and `tests/fuzz_smoke.rs` (stable, in CI)
//! drive them. Where a decode succeeds they also check that encoding the
//! value again decodes to the same thing.

use protobuf::Message as _;
use shoal_core::codec;

use crate::api::views;
use crate::cluster::inbound;
use crate::cluster::wire::{OneWay, Request, Response};
use crate::transport::frame::{decode_frame, header as frame_header, MAX_FRAME};

/// A small limit as well as the real one, so both refusal paths are reached.
const SMALL_FRAME: usize = 64;

/// A stream of length-prefixed frames, split as `read_frame` would.
pub fn frame(data: &[u8]) {
    for max in [SMALL_FRAME, MAX_FRAME] {
        let mut rest = data;
        while let Ok((payload, next)) = decode_frame(rest, max) {
            assert!(payload.len() <= max, "a frame above its limit was accepted");
            let mut again = frame_header(payload.len())
                .expect("a payload under the limit")
                .to_vec();
            again.extend_from_slice(payload);
            assert_eq!(
                again[..],
                rest[..again.len()],
                "a frame re-encodes differently"
            );
            rest = next;
        }
    }
}

/// The three node-to-node messages, as `cluster::inbound` decodes them.
pub fn wire(data: &[u8]) {
    round_trip::<OneWay>(data);
    round_trip::<Request>(data);
    round_trip::<Response>(data);
}

/// What a node keeps or ships besides the cluster protocol's messages, as
/// the versioned codec reads it in any format: a Raft entry (`Proposal`,
/// packed or not), each record of the state tree, a snapshot, a mesh
/// tunnel's header.
pub fn record(data: &[u8]) {
    use shoal_core::model::{network::Network, secret::Object, Cluster, Node, Service, Task};
    round_trip::<shoal_core::command::Proposal>(data);
    round_trip::<Node>(data);
    round_trip::<Service>(data);
    round_trip::<Task>(data);
    round_trip::<Cluster>(data);
    round_trip::<Network>(data);
    round_trip::<Object>(data);
    round_trip::<shoal_actors::store::AppliedIndex>(data);
    // A snapshot: the applied index, then the state.
    round_trip::<(
        shoal_actors::store::AppliedIndex,
        shoal_core::state::ClusterState,
    )>(data);
    round_trip::<crate::mesh::tunnel::Header>(data);
}

/// Decodes `data`; if that works, encoding the value and decoding it again
/// must give the same bytes (the first encoding normalizes the input), in
/// this build's format and in the format the record was written in.
fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
    let Ok(value) = codec::decode::<T>(data) else {
        return;
    };
    let (format, _) = codec::format_of(data).expect("a decoded record has a format");
    for format in [codec::supported(), format] {
        let bytes = codec::encode_at(&value, format).expect("a decoded value encodes");
        let again: T = codec::decode(&bytes).expect("an encoded value decodes");
        let bytes_again = codec::encode_at(&again, format).expect("a decoded value encodes");
        assert_eq!(bytes, bytes_again, "a record does not round-trip");
    }
}

/// The Raft path: a `OneWay::Raft` envelope and its protobuf, as
/// `ClusterInbound::message` takes them, and the protobuf alone.
pub fn raft_message(data: &[u8]) {
    if let Ok(OneWay::Raft { from, msg, .. }) = codec::decode::<OneWay>(data) {
        let _ = inbound::raft_message(from, &msg);
    }
    let Ok(message) = raft::prelude::Message::parse_from_bytes(data) else {
        return;
    };
    // Compared by what survives encoding, not with `==`: protobuf 2 tells an
    // empty set of unknown fields from none, and orders unknown fields by hash.
    let bytes = message.write_to_bytes().expect("a parsed message encodes");
    let again =
        raft::prelude::Message::parse_from_bytes(&bytes).expect("an encoded message parses");
    assert_eq!(
        header(&message),
        header(&again),
        "a Raft message does not round-trip"
    );
    assert_eq!(
        again.compute_size() as usize,
        bytes.len(),
        "a Raft message changes size"
    );
}

/// The fields raft-rs steps on, and how many entries there are.
fn header(m: &raft::prelude::Message) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        (m.get_msg_type(), m.to, m.from, m.term, m.log_term, m.index),
        (
            m.commit,
            m.commit_term,
            m.request_snapshot,
            m.reject,
            m.reject_hint,
        ),
        (&m.context, m.priority, m.entries.len(), m.has_snapshot()),
    )
}

/// A `POST /services/create` or `/update` body.
pub fn service_spec(data: &[u8]) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(spec) = views::parse_service_spec(&json) else {
        return;
    };
    assert_eq!(
        views::parse_service_spec(&views::service_spec_json(&spec)).as_ref(),
        Ok(&spec),
        "a service spec does not round-trip through its JSON"
    );
}
