//! The `fleet.readings.v1` Avro record of a curated reading, written from the values the core
//! has just checked: the bytes of the Python reference (`schemas.avro_codec.ReadingsEncoder`,
//! itself fastavro's). The layout comes from Python at start (`schemas.compiled_core`, read
//! from `avro/readings.avsc`): the `source` symbols and, per catalogue sensor type, its record
//! fields or a map of measures. What the layout does not describe (a sensor type outside the
//! catalogue, a required field that is absent) is `None`: the reference writes that record.

use std::borrow::Cow;

use crate::json::Value;
use crate::sensors::as_float;

pub enum Kind {
    Boolean,
    Long,
    Double,
    String,
}

/// A field of a sensor's record: `optional` is the `["null", X]` union.
pub struct Field {
    pub name: String,
    pub kind: Kind,
    pub optional: bool,
}

pub enum Sensor {
    Record(Vec<Field>),
    /// A map of `["boolean", "double"]` (the catalogue's `generic`).
    Measures,
}

pub struct Layout {
    /// The `Source` enum's symbols, in order.
    pub sources: Vec<String>,
    /// The `Sensors` record's fields but `other`, in order.
    pub sensors: Vec<(String, Sensor)>,
}

/// An Avro long (zigzag varint); `int` is written the same way.
pub fn long(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag > 0x7F {
        out.push((zigzag as u8 & 0x7F) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

pub fn string(out: &mut Vec<u8>, text: &str) {
    long(out, text.len() as i64);
    out.extend_from_slice(text.as_bytes());
}

pub fn double(out: &mut Vec<u8>, value: f64) {
    out.extend_from_slice(&value.to_le_bytes());
}

type Pairs<'v, 'a> = &'v [(Cow<'a, str>, Value<'a>)];

fn get<'v, 'a>(pairs: Pairs<'v, 'a>, name: &str) -> Option<&'v Value<'a>> {
    pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value)
}

impl Layout {
    /// The index of `source` in the enum.
    pub fn source(&self, out: &mut Vec<u8>, source: &str) -> Option<()> {
        let index = self.sources.iter().position(|s| s == source)?;
        long(out, index as i64);
        Some(())
    }

    /// The `Sensors` record of checked sensors (every name a catalogue type).
    pub fn sensors(&self, pairs: Pairs<'_, '_>, out: &mut Vec<u8>) -> Option<()> {
        if pairs.iter().any(|(name, _)| !self.sensors.iter().any(|(known, _)| known == name)) {
            return None; // `other`: the reference's general path
        }
        for (name, sensor) in &self.sensors {
            let Some(value) = get(pairs, name) else {
                out.push(0);
                continue;
            };
            let Value::Object(fields) = value else { return None };
            out.push(2);
            match sensor {
                Sensor::Record(layout) => record(layout, fields, out)?,
                Sensor::Measures => measures(fields, out)?,
            }
        }
        out.push(0); // other: an empty map
        Some(())
    }
}

fn record(layout: &[Field], fields: Pairs<'_, '_>, out: &mut Vec<u8>) -> Option<()> {
    for field in layout {
        match get(fields, &field.name) {
            None | Some(Value::Null) if field.optional => out.push(0),
            None | Some(Value::Null) => return None,
            Some(value) => {
                if field.optional {
                    out.push(2);
                }
                scalar(&field.kind, value, out)?;
            }
        }
    }
    Some(())
}

fn scalar(kind: &Kind, value: &Value<'_>, out: &mut Vec<u8>) -> Option<()> {
    match (kind, value) {
        (Kind::Boolean, Value::Bool(flag)) => out.push(u8::from(*flag)),
        (Kind::Long, Value::Int(number)) => long(out, *number),
        (Kind::Double, _) => double(out, as_float(value)?),
        (Kind::String, Value::Str(text)) => string(out, text),
        _ => return None,
    }
    Some(())
}

fn measures(fields: Pairs<'_, '_>, out: &mut Vec<u8>) -> Option<()> {
    if !fields.is_empty() {
        long(out, fields.len() as i64);
        for (name, value) in fields {
            string(out, name);
            match value {
                Value::Bool(flag) => out.extend_from_slice(&[0, u8::from(*flag)]),
                _ => {
                    out.push(2);
                    double(out, as_float(value)?);
                }
            }
        }
    }
    out.push(0);
    Some(())
}

/// The metadata union: null, or a map of `["boolean", "long", "double", "string"]`.
pub fn metadata(pairs: Option<Pairs<'_, '_>>, out: &mut Vec<u8>) -> Option<()> {
    let Some(pairs) = pairs else {
        out.push(0);
        return Some(());
    };
    out.push(2);
    if !pairs.is_empty() {
        long(out, pairs.len() as i64);
        for (key, value) in pairs {
            string(out, key);
            match value {
                Value::Bool(flag) => out.extend_from_slice(&[0, u8::from(*flag)]),
                Value::Int(number) => {
                    out.push(2);
                    long(out, *number);
                }
                Value::Float(number) => {
                    out.push(4);
                    double(out, *number);
                }
                Value::Str(text) => {
                    out.push(6);
                    string(out, text);
                }
                _ => return None,
            }
        }
    }
    out.push(0);
    Some(())
}
