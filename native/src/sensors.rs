//! Sensor types as the catalogue (Python's `schemas.catalogue`) describes them, handed over at
//! start: the rules of each type's fields, and the writing of its validated JSON.
//!
//! Every check answers "the reference accepts this, and writes exactly these bytes", or refuses
//! (`None`): the caller then leaves the record to the reference.

use crate::float;
use std::borrow::Cow;

use crate::json::{write_str, Value};

/// Integers beyond this are left to the reference (bounds are compared as f64).
const EXACT_INT: i64 = 1 << 53;

pub enum Kind {
    Bool,
    Int,
    Float,
    Literal(Vec<String>),
}

pub struct Field {
    pub name: String,
    pub kind: Kind,
    pub required: bool,
    pub ge: Option<f64>,
    pub le: Option<f64>,
    /// A literal default, omitted when written (msgspec's `omit_defaults`).
    pub default: Option<String>,
}

pub enum Rules {
    /// A struct of named fields in order; `at_least_one`: one field must be present.
    Struct { fields: Vec<Field>, at_least_one: bool },
    /// Named finite numbers (written as floats) and booleans: the generic rules.
    Generic(GenericRules),
    /// A type the fast path does not read: its readings go to the reference.
    Reference,
}

pub struct GenericRules {
    pub min_fields: usize,
    pub max_fields: usize,
    pub name_max: usize,
}

pub struct SensorType {
    pub name: String,
    pub rules: Rules,
    /// Whether `FLEET_GENERIC__*` limits apply to it (the catalogue's `generic`).
    pub limited: bool,
}

/// What the generic rules took of one reading, for `FLEET_GENERIC__*`.
pub struct Limits {
    pub fields_per_sensor: usize,
    pub fields_per_reading: usize,
    pub name_length: usize,
}

pub fn is_sensor_name(name: &str, max: usize) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= max
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

impl Rules {
    /// Checks `value` and writes its JSON; the count of fields the generic rules read.
    pub fn write(&self, value: &Value<'_>, out: &mut Vec<u8>) -> Option<usize> {
        let Value::Object(pairs) = value else { return None };
        match self {
            Rules::Struct { fields, at_least_one } => {
                write_struct(fields, *at_least_one, pairs, out).map(|()| 0)
            }
            Rules::Generic(rules) => write_generic(rules, pairs, out),
            Rules::Reference => None,
        }
    }
}

fn write_struct(
    fields: &[Field],
    at_least_one: bool,
    pairs: &[(Cow<'_, str>, Value<'_>)],
    out: &mut Vec<u8>,
) -> Option<()> {
    if pairs.iter().any(|(key, _)| !fields.iter().any(|f| f.name == *key)) {
        return None; // an unknown field
    }
    out.push(b'{');
    let (mut present, mut written) = (0, 0);
    for field in fields {
        let value = pairs.iter().find(|(key, _)| *key == field.name).map(|(_, v)| v);
        match value {
            None | Some(Value::Null) if field.required => return None,
            None | Some(Value::Null) => continue,
            Some(value) => {
                present += 1;
                let mark = out.len();
                if written > 0 {
                    out.push(b',');
                }
                write_str(out, &field.name);
                out.push(b':');
                if field.write_value(value, out)? {
                    written += 1;
                } else {
                    out.truncate(mark); // the default: omitted
                }
            }
        }
    }
    if at_least_one && present == 0 {
        return None;
    }
    out.push(b'}');
    Some(())
}

impl Field {
    /// Writes the value; `Some(false)` when it equals the default (to be omitted).
    fn write_value(&self, value: &Value<'_>, out: &mut Vec<u8>) -> Option<bool> {
        match (&self.kind, value) {
            (Kind::Bool, Value::Bool(flag)) => {
                out.extend_from_slice(if *flag { b"true" } else { b"false" });
            }
            (Kind::Int, Value::Int(number)) => {
                self.in_range(exact(*number)?)?;
                crate::json::write_int(out, *number);
            }
            (Kind::Float, _) => {
                let number = as_float(value)?;
                self.in_range(number)?;
                float::write(out, number).then_some(())?;
            }
            (Kind::Literal(allowed), Value::Str(text)) => {
                if !allowed.iter().any(|a| a == text) {
                    return None;
                }
                if self.default.as_deref() == Some(text.as_ref()) {
                    return Some(false);
                }
                write_str(out, text);
            }
            _ => return None,
        }
        Some(true)
    }

    fn in_range(&self, number: f64) -> Option<()> {
        let low = self.ge.is_none_or(|ge| number >= ge);
        let high = self.le.is_none_or(|le| number <= le);
        (low && high).then_some(())
    }
}

fn exact(number: i64) -> Option<f64> {
    (-EXACT_INT..=EXACT_INT).contains(&number).then_some(number as f64)
}

/// A JSON number as the float msgspec makes of it (integers within 2^53 only).
pub fn as_float(value: &Value<'_>) -> Option<f64> {
    match value {
        Value::Float(number) => Some(*number),
        Value::Int(number) => exact(*number),
        _ => None,
    }
}

fn write_generic(
    rules: &GenericRules,
    pairs: &[(Cow<'_, str>, Value<'_>)],
    out: &mut Vec<u8>,
) -> Option<usize> {
    if pairs.len() < rules.min_fields || pairs.len() > rules.max_fields {
        return None;
    }
    out.push(b'{');
    for (index, (name, value)) in pairs.iter().enumerate() {
        if !is_sensor_name(name, rules.name_max) {
            return None;
        }
        if index > 0 {
            out.push(b',');
        }
        write_str(out, name);
        out.push(b':');
        match value {
            Value::Bool(flag) => out.extend_from_slice(if *flag { b"true" } else { b"false" }),
            _ => float::write(out, as_float(value)?).then_some(())?,
        }
    }
    out.push(b'}');
    Some(pairs.len())
}

/// The `FLEET_GENERIC__*` check of one sensor read by the generic rules.
pub fn within_limits(pairs: &Value<'_>, limits: &Limits, total: &mut usize) -> Option<()> {
    let Value::Object(pairs) = pairs else { return None };
    if pairs.len() > limits.fields_per_sensor {
        return None;
    }
    for (name, _) in pairs {
        *total += 1;
        if name.chars().count() > limits.name_length || *total > limits.fields_per_reading {
            return None;
        }
    }
    Some(())
}
