//! A forged length prefix must not make `codec::decode` allocate more than a
//! small multiple of its input. This binary counts allocations itself, so it
//! holds only these tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use shoal_core::codec;

/// The system allocator, remembering the largest single request.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// bincode's varint for a u64 that does not fit in 32 bits: 253, then 8 bytes LE.
fn varint_u64(n: u64) -> Vec<u8> {
    let mut bytes = vec![253];
    bytes.extend_from_slice(&n.to_le_bytes());
    bytes
}

// One test only: the counter is process-wide and tests run on threads.
#[test]
fn a_forged_string_length_is_refused_before_it_is_allocated() {
    // A String claiming 200 MB (under the 256 MB cap) in 9 bytes, alone and
    // as the second field of a pair.
    let alone = varint_u64(200 << 20);
    let mut second = vec![0];
    second.extend_from_slice(&alone);

    LARGEST.store(0, Ordering::Relaxed);
    assert!(codec::decode::<String>(&alone).is_err());
    assert!(codec::decode::<(String, String)>(&second).is_err());
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= 1 << 16,
        "decoding 10 bytes allocated {largest} bytes at once"
    );

    // Values that take many times their encoding in memory still decode.
    let wide = vec![0u128; 100_000];
    assert_eq!(
        codec::decode::<Vec<u128>>(&codec::encode(&wide).unwrap()).unwrap(),
        wide
    );
    let text = "x".repeat(3 << 20);
    assert_eq!(
        codec::decode::<String>(&codec::encode(&text).unwrap()).unwrap(),
        text
    );
}
