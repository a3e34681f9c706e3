//! Feeding store change events into an actor's mailbox.

use ractor::ActorRef;
use tokio::sync::broadcast;

use crate::store::StoreEvent;

/// Forwards every store event to `to` as `wrap(Some(event))`, or `wrap(None)`
/// when events were missed and the actor must resynchronise from the state.
/// The forwarding task ends by itself once the actor is gone.
pub fn forward<M: ractor::Message>(
    events: &broadcast::Sender<StoreEvent>,
    to: ActorRef<M>,
    wrap: fn(Option<StoreEvent>) -> M,
) {
    let mut rx = events.subscribe();
    tokio::spawn(async move {
        loop {
            let msg = match rx.recv().await {
                Ok(ev) => wrap(Some(ev)),
                Err(broadcast::error::RecvError::Lagged(_)) => wrap(None),
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if to.send_message(msg).is_err() {
                return;
            }
        }
    });
}
