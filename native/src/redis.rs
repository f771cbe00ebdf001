//! The Redis sink's merge and packing: a batch of `fleet.curated.v1` envelopes in, the device
//! commands of `connectors.redis.writer.RedisWriter` out, packed as hiredis packs them.
//!
//! Per device, in the order devices first appear: `HSET` of its latest hash (the newest reading
//! by `ts`), `HSET` of its status hash (`last_seen`, `device_id`, `last_event_id`, then the last
//! value of each sensor field), `PUBLISH` of its readings on its channel; then the readings of
//! every device on the all-devices channel, `ALL_CHANNEL_CHUNK` a message. The field order is
//! the Python dicts' (a key updated keeps its place). Anything the reference would read another
//! way or dead-letter (a record that is not a curated envelope, an item without its fields, a
//! timestamp not in `Z` form) makes the whole batch the reference's: `None`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::json::{envelope_objects, object_spans, string_at, Members, Span};
use crate::time;

/// Readings per message on the all-devices channel (`connectors.redis.writer`).
const ALL_CHANNEL_CHUNK: usize = 500;

pub struct Merge {
    /// How a curated envelope starts: `{"format":"curated-envelope/1","items":[`.
    pub envelope_prefix: Vec<u8>,
    /// `FLEET_REDIS__PREFIX`.
    pub key_prefix: String,
}

/// A batch's commands, packed.
pub struct Packed {
    pub bytes: Vec<u8>,
    pub commands: usize,
    pub devices: usize,
}

/// One reading's fields that the merge reads.
struct Reading<'a> {
    device_id: Cow<'a, str>,
    event_id: Cow<'a, str>,
    ts: i64,
    received_at: i64,
    sensors: Vec<(Cow<'a, str>, &'a [u8])>,
    item: &'a [u8],
}

/// FNV-1a: the maps here hold device ids and field names of one batch, not keys an attacker
/// can aim at a table that outlives the call, and SipHash was a tenth of the merge.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// A Python dict of str keys in miniature: insertion order, an update keeps the key's place.
struct Ordered<'a, V> {
    entries: Vec<(Cow<'a, str>, V)>,
    index: FastMap<Cow<'a, str>, usize>,
}

impl<'a, V> Ordered<'a, V> {
    fn new() -> Self {
        Ordered { entries: Vec::new(), index: FastMap::default() }
    }

    fn set(&mut self, key: Cow<'a, str>, value: V) {
        match self.index.get(&key) {
            Some(&at) => self.entries[at].1 = value,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }
}

struct Device<'a> {
    id: Cow<'a, str>,
    items: Vec<&'a [u8]>,
    latest: Option<(i64, Cow<'a, str>, i64, &'a [u8])>,
    last_seen: i64,
    last_event_id: Cow<'a, str>,
    sensors: Ordered<'a, &'a [u8]>,
}

impl<'a> Device<'a> {
    fn add(&mut self, reading: Reading<'a>) {
        self.items.push(reading.item);
        let newer = self.latest.as_ref().is_none_or(|(ts, ..)| reading.ts >= *ts);
        if newer {
            self.latest =
                Some((reading.ts, reading.event_id.clone(), reading.received_at, reading.item));
        }
        if reading.received_at >= self.last_seen {
            self.last_seen = reading.received_at;
        }
        self.last_event_id = reading.event_id;
        for (sensor, raw) in reading.sensors {
            self.sensors.set(sensor, raw);
        }
    }
}

impl Merge {
    /// The batch's device commands, or `None` to leave the batch to the reference.
    pub fn merge(&self, values: &[&[u8]]) -> Option<Packed> {
        let mut devices: Vec<Device<'_>> = Vec::new();
        let mut by_id: FastMap<Cow<'_, str>, usize> = FastMap::default();
        for value in values {
            let text = std::str::from_utf8(value).ok()?;
            for (members, span) in envelope_objects(text, &self.envelope_prefix)? {
                let reading = read(text, &members, span)?;
                let at = match by_id.get(&reading.device_id) {
                    Some(&at) => at,
                    None => {
                        by_id.insert(reading.device_id.clone(), devices.len());
                        devices.push(Device {
                            id: reading.device_id.clone(),
                            items: Vec::new(),
                            latest: None,
                            last_seen: i64::MIN,
                            last_event_id: Cow::Borrowed(""),
                            sensors: Ordered::new(),
                        });
                        devices.len() - 1
                    }
                };
                devices[at].add(reading);
            }
        }
        let input: usize = values.iter().map(|value| value.len()).sum();
        self.pack(&devices, input)
    }

    fn pack(&self, devices: &[Device<'_>], input: usize) -> Option<Packed> {
        // Each reading goes out three times (latest hash, its channel, the all-devices channel);
        // room for that and the status fields up front, so the buffer is not copied as it grows.
        let mut out = Vec::with_capacity(input * 3 + devices.len() * 512);
        let mut commands = 0;
        let mut every_item: Vec<&[u8]> = Vec::new();
        for device in devices {
            self.pack_device(&mut out, device)?;
            commands += 3;
            every_item.extend_from_slice(&device.items);
        }
        let channel = format!("{}:readings", self.key_prefix);
        for chunk in every_item.chunks(ALL_CHANNEL_CHUNK) {
            let mut feed = b"{\"readings\":[".to_vec();
            join(&mut feed, chunk);
            feed.extend_from_slice(b"]}");
            command(&mut out, &[b"PUBLISH", channel.as_bytes(), &feed]);
            commands += 1;
        }
        Some(Packed { bytes: out, commands, devices: devices.len() })
    }

    fn pack_device(&self, out: &mut Vec<u8>, device: &Device<'_>) -> Option<()> {
        let (ts, event_id, received_at, item) = device.latest.as_ref()?;
        let id = device.id.as_ref();
        let (ts, received_at) = (isoformat(*ts), isoformat(*received_at));
        let latest_key = format!("{}:device:{id}:latest", self.key_prefix);
        command(
            out,
            &[
                b"HSET",
                latest_key.as_bytes(),
                b"event_id",
                event_id.as_bytes(),
                b"ts",
                &ts,
                b"received_at",
                &received_at,
                b"reading",
                item,
            ],
        );
        let mut status: Ordered<'_, Cow<'_, [u8]>> = Ordered::new();
        status.set(Cow::Borrowed("last_seen"), Cow::Owned(isoformat(device.last_seen)));
        status.set(Cow::Borrowed("device_id"), Cow::Borrowed(id.as_bytes()));
        status.set(Cow::Borrowed("last_event_id"), Cow::Borrowed(device.last_event_id.as_bytes()));
        for (sensor, raw) in &device.sensors.entries {
            let text = std::str::from_utf8(raw).ok()?;
            if !text.starts_with('{') {
                continue; // not an object: no fields (the reference skips it too)
            }
            let (fields, _) = object_spans(text, 0)?;
            for (name, (start, end)) in fields {
                let encoded = &raw[start..end];
                if matches!(encoded[0], b'{' | b'[' | b'n') {
                    continue;
                }
                status.set(Cow::Owned(format!("v:{sensor}.{name}")), Cow::Borrowed(encoded));
            }
        }
        let status_key = format!("{}:device:{id}:status", self.key_prefix);
        let mut args: Vec<&[u8]> = vec![b"HSET", status_key.as_bytes()];
        for (name, value) in &status.entries {
            args.push(name.as_bytes());
            args.push(value);
        }
        command(out, &args);
        let channel = format!("{}:readings:{id}", self.key_prefix);
        let mut feed = b"{\"device_id\":".to_vec();
        crate::json::write_str(&mut feed, id);
        feed.extend_from_slice(b",\"readings\":[");
        join(&mut feed, &device.items);
        feed.extend_from_slice(b"]}");
        command(out, &[b"PUBLISH", channel.as_bytes(), &feed]);
        Some(())
    }
}

/// The fields the Redis sink reads of one curated item (`agents.redis_sink._Reading`).
fn read<'a>(text: &'a str, members: &Members<'a>, (start, end): Span) -> Option<Reading<'a>> {
    let mut device_id = None;
    let mut event_id = None;
    let mut ts = None;
    let mut received_at = None;
    let mut sensors = None;
    for (key, (from, _)) in members {
        match key.as_ref() {
            "device_id" => device_id = Some(string_at(text, *from)?),
            "event_id" => event_id = Some(string_at(text, *from)?),
            "ts" => ts = Some(timestamp(&string_at(text, *from)?)?),
            "received_at" => received_at = Some(timestamp(&string_at(text, *from)?)?),
            "sensors" => {
                let (pairs, _) = object_spans(text, *from)?;
                let bytes = text.as_bytes();
                sensors = Some(pairs.into_iter().map(|(k, (a, b))| (k, &bytes[a..b])).collect());
            }
            _ => {}
        }
    }
    Some(Reading {
        device_id: device_id?,
        event_id: event_id?,
        ts: ts?,
        received_at: received_at?,
        sensors: sensors?,
        item: &text.as_bytes()[start..end],
    })
}

/// A `Z` timestamp as microseconds (others, with an offset, are the reference's: Python keeps
/// their offset when it writes them back).
fn timestamp(text: &str) -> Option<i64> {
    if !text.ends_with('Z') {
        return None;
    }
    time::parse(text).filter(|micros| time::in_years(*micros))
}

fn isoformat(micros: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    time::write_isoformat(&mut out, micros);
    out
}

fn join(out: &mut Vec<u8>, items: &[&[u8]]) {
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
}

/// One command in RESP, as `hiredis.pack_command` writes it.
fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    decimal(out, args.len());
    for arg in args {
        out.push(b'$');
        decimal(out, arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// `number` in decimal, then CRLF.
fn decimal(out: &mut Vec<u8>, mut number: usize) {
    let mut digits = [0_u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}
