//! The validate step's fast path for one raw record: a `raw-envelope/2` whose every item the
//! reference would accept, curated to the bytes the reference writes. Anything else (a record
//! in another format, one bad item, a policy refusal) is left whole to the reference, which
//! stays the only writer of dead letters: their reasons cannot drift.

use std::borrow::Cow;

use crate::json::{self, write_str, Value};
use crate::sensors::{self, Limits, Rules, SensorType};
use crate::{avro, float, time};

/// 2000-01-01T00:00:00Z: earlier timestamps are refused (`schemas.validation.MIN_TIMESTAMP`).
const MIN_TIMESTAMP_US: i64 = 946_684_800_000_000;
/// One day of clock skew (`schemas.validation.DEFAULT_MAX_FUTURE`).
const MAX_FUTURE_US: i64 = time::MICROS_PER_DAY;
/// Lags beyond 2^53 µs (~285 years) would not convert to a float exactly.
const EXACT_MICROS: i64 = 1 << 53;
const READING_FIELDS: [&str; 5] = ["device_id", "sensors", "timestamp", "event_id", "metadata"];

pub struct MetadataRules {
    pub max_entries: usize,
    pub key_min: usize,
    pub key_max: usize,
    pub text_max: usize,
}

pub struct Core {
    pub raw_prefix: Vec<u8>,
    pub sensors: Vec<SensorType>,
    /// Unknown sensor types are read with these rules; `None`: they are refused.
    pub unknown_types: Option<Rules>,
    pub limits: Limits,
    pub max_replays: i64,
    pub metadata: MetadataRules,
    pub sources: Vec<String>,
    pub sensor_name_max: usize,
    /// The `fleet.readings.v1` Avro layout; `None`: the reference writes every record.
    pub avro: Option<avro::Layout>,
}

/// Where an item is in its record: (start, end) byte offsets.
pub use crate::json::Span;

/// A curated reading without its enrichment: `head` is its JSON up to `metadata`.
pub struct Item {
    pub device_id: String,
    pub head: Vec<u8>,
    received_us: i64,
    replayed: i64,
    /// Its Avro record from `schema_version` to `metadata`; `None`: the reference writes it.
    avro: Option<Vec<u8>>,
}

impl Item {
    /// The whole curated JSON, with the enrichment fields (`"device_name":...,"tags":[...]`);
    /// `None` leaves the item to the reference (a lag the float writer refuses).
    pub fn finish(&self, enrichment: &[u8], now_us: i64) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.head.len() + enrichment.len() + 96);
        out.extend_from_slice(&self.head);
        out.push(b',');
        out.extend_from_slice(enrichment);
        out.extend_from_slice(b",\"processed_at\":");
        time::write(&mut out, now_us);
        out.extend_from_slice(b",\"lag_ms\":");
        float::write(&mut out, self.lag_ms(now_us)).then_some(())?;
        out.extend_from_slice(b",\"replayed\":");
        json::write_int(&mut out, self.replayed);
        out.push(b'}');
        Some(out)
    }

    fn lag_ms(&self, now_us: i64) -> f64 {
        (now_us - self.received_us) as f64 / 1e6 * 1000.0
    }

    /// Its framed `fleet.readings.v1` value, `registry` the Avro fields `device_name` ..
    /// `tags`; only for an item `finish` wrote (the same lag).
    pub fn finish_avro(&self, prefix: &[u8], registry: &[u8], now_us: i64) -> Option<Vec<u8>> {
        let head = self.avro.as_ref()?;
        let mut out = Vec::with_capacity(prefix.len() + head.len() + registry.len() + 24);
        out.extend_from_slice(prefix);
        out.extend_from_slice(head);
        out.extend_from_slice(registry);
        out.push(2);
        avro::long(&mut out, now_us);
        out.push(2);
        avro::double(&mut out, self.lag_ms(now_us));
        avro::long(&mut out, self.replayed);
        Some(out)
    }
}

fn get<'v, 'a>(pairs: &'v [(Cow<'a, str>, Value<'a>)], name: &str) -> Option<&'v Value<'a>> {
    pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value)
}

fn text<'v>(value: Option<&'v Value<'_>>) -> Option<&'v str> {
    match value {
        Some(Value::Str(text)) => Some(text.as_ref()),
        _ => None,
    }
}

fn is_device_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && id.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

impl Core {
    /// Per item of the record: its curated reading (`None` leaves the item to the reference)
    /// and its byte range; `None` leaves the whole record to the reference.
    pub fn record(&self, value: &[u8], now_us: i64) -> Option<Vec<(Option<Item>, Span)>> {
        let items = json::parse_envelope(value, &self.raw_prefix)?;
        Some(items.into_iter().map(|(item, span)| (self.item(&item, now_us), span)).collect())
    }

    fn item(&self, item: &Value<'_>, now_us: i64) -> Option<Item> {
        let Value::Object(fields) = item else { return None };
        let event_id = text(get(fields, "event_id")).filter(|id| is_uuid(id))?;
        let device_id = text(get(fields, "device_id")).filter(|id| is_device_id(id))?;
        let received_us = time::parse(text(get(fields, "received_at"))?)?;
        if !time::in_years(received_us) || (now_us - received_us).abs() > EXACT_MICROS {
            return None; // beyond a Python datetime, or a lag not exact as a float
        }
        let source = text(get(fields, "source")).filter(|s| self.sources.iter().any(|k| k == s))?;
        match get(fields, "schema") {
            None | Some(Value::Int(1)) => {}
            _ => return None,
        }
        let replayed = match get(fields, "replayed") {
            None => 0,
            Some(Value::Int(count)) if *count >= 0 && *count <= self.max_replays => *count,
            _ => return None,
        };
        let Value::Object(reading) = get(fields, "payload")? else { return None };
        if reading.iter().any(|(key, _)| !READING_FIELDS.contains(&key.as_ref())) {
            return None;
        }
        if text(get(reading, "device_id"))? != device_id {
            return None;
        }
        let ts = self.timestamp(get(reading, "timestamp"), now_us)?.unwrap_or(received_us);
        match get(reading, "event_id") {
            None | Some(Value::Null) => {}
            Some(Value::Str(id)) if is_uuid(id) => {}
            _ => return None,
        }
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(b"{\"schema_version\":1,\"event_id\":");
        let event_id = event_id.to_ascii_lowercase();
        write_str(&mut head, &event_id);
        head.extend_from_slice(b",\"device_id\":");
        write_str(&mut head, device_id);
        head.extend_from_slice(b",\"ts\":");
        time::write(&mut head, ts);
        head.extend_from_slice(b",\"received_at\":");
        time::write(&mut head, received_us);
        head.extend_from_slice(b",\"source\":");
        write_str(&mut head, source);
        head.extend_from_slice(b",\"sensors\":");
        self.sensors_json(get(reading, "sensors")?, &mut head)?;
        head.extend_from_slice(b",\"metadata\":");
        self.metadata_json(get(reading, "metadata"), &mut head)?;
        let avro = self.avro.as_ref().and_then(|layout| {
            let mut out = Vec::with_capacity(256);
            avro::long(&mut out, 1); // schema_version
            avro::string(&mut out, &event_id);
            avro::string(&mut out, device_id);
            avro::long(&mut out, ts);
            avro::long(&mut out, received_us);
            layout.source(&mut out, source)?;
            let Some(Value::Object(sensors)) = get(reading, "sensors") else { return None };
            layout.sensors(sensors, &mut out)?;
            let metadata = match get(reading, "metadata") {
                Some(Value::Object(pairs)) => Some(pairs.as_slice()),
                _ => None,
            };
            avro::metadata(metadata, &mut out)?;
            Some(out)
        });
        let device_id = device_id.to_owned();
        Some(Item { device_id, head, received_us, replayed, avro })
    }

    /// `Some(None)`: no timestamp; `None`: refused.
    fn timestamp(&self, value: Option<&Value<'_>>, now_us: i64) -> Option<Option<i64>> {
        match value {
            None | Some(Value::Null) => Some(None),
            Some(Value::Str(text)) => {
                let ts = time::parse(text)?;
                (ts >= MIN_TIMESTAMP_US && ts - now_us <= MAX_FUTURE_US).then_some(Some(ts))
            }
            _ => None,
        }
    }

    fn sensors_json(&self, value: &Value<'_>, out: &mut Vec<u8>) -> Option<()> {
        let Value::Object(pairs) = value else { return None };
        if pairs.is_empty() || pairs.iter().any(|(_, v)| matches!(v, Value::Null)) {
            return None;
        }
        let known = |name: &str| self.sensors.iter().find(|s| s.name == name);
        if pairs.iter().all(|(name, _)| known(name).is_some()) {
            let present = self.sensors.iter().filter_map(|s| Some((s, get(pairs, &s.name)?)));
            return self.write_sensors(present, out);
        }
        let unknown = self.unknown_types.as_ref()?;
        if !pairs.iter().all(|(name, _)| sensors::is_sensor_name(name, self.sensor_name_max)) {
            return None;
        }
        out.push(b'{');
        let mut total = 0;
        for (index, (name, value)) in pairs.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_str(out, name);
            out.push(b':');
            let sensor = known(name);
            sensor.map_or(unknown, |s| &s.rules).write(value, out)?;
            if sensor.is_none_or(|s| s.limited) {
                sensors::within_limits(value, &self.limits, &mut total)?;
            }
        }
        out.push(b'}');
        Some(())
    }

    /// Known sensor types only, in catalogue order (the reference's `Sensors` struct).
    fn write_sensors<'a>(
        &self,
        present: impl Iterator<Item = (&'a SensorType, &'a Value<'a>)>,
        out: &mut Vec<u8>,
    ) -> Option<()> {
        out.push(b'{');
        let mut total = 0;
        for (index, (sensor, value)) in present.enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_str(out, &sensor.name);
            out.push(b':');
            sensor.rules.write(value, out)?;
            if sensor.limited {
                sensors::within_limits(value, &self.limits, &mut total)?;
            }
        }
        out.push(b'}');
        Some(())
    }

    fn metadata_json(&self, value: Option<&Value<'_>>, out: &mut Vec<u8>) -> Option<()> {
        let pairs = match value {
            None | Some(Value::Null) => {
                out.extend_from_slice(b"null");
                return Some(());
            }
            Some(Value::Object(pairs)) => pairs,
            Some(_) => return None,
        };
        let rules = &self.metadata;
        if pairs.len() > rules.max_entries {
            return None;
        }
        out.push(b'{');
        for (index, (key, value)) in pairs.iter().enumerate() {
            let key_length = key.chars().count();
            if key_length < rules.key_min || key_length > rules.key_max {
                return None;
            }
            if index > 0 {
                out.push(b',');
            }
            write_str(out, key);
            out.push(b':');
            match value {
                Value::Str(text) if text.chars().count() <= rules.text_max => write_str(out, text),
                Value::Int(number) => json::write_int(out, *number),
                Value::Float(number) => float::write(out, *number).then_some(())?,
                Value::Bool(flag) => out.extend_from_slice(if *flag { b"true" } else { b"false" }),
                _ => return None,
            }
        }
        out.push(b'}');
        Some(())
    }
}
