//! A strict JSON reader for the fast path. It refuses (returns `None`) whatever the fast path
//! does not take: invalid JSON or UTF-8, duplicate keys, integers outside i64, numbers that
//! are not finite, control characters in any string, nesting deeper than `MAX_DEPTH`. A refusal
//! is not an error: the caller hands the record to the Python reference, which says why.

use std::borrow::Cow;

/// Strings borrow from the input unless they hold escapes.
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// Arrays are read through, not kept: no field the fast path takes holds one.
    Array,
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

const MAX_DEPTH: usize = 32;

/// The items of a JSON object that starts with `prefix` (`{"format":"...","items":[`), each
/// with its byte range in `input`; `None` unless the whole object is valid JSON as the reader
/// takes it, with no second `format` or `items` key.
pub fn parse_envelope<'a>(
    input: &'a [u8],
    prefix: &[u8],
) -> Option<Vec<(Value<'a>, (usize, usize))>> {
    let text = std::str::from_utf8(input).ok()?;
    envelope(text, prefix, |reader| reader.value(1))
}

/// An envelope's items, each read by `item` (which sees the reader at the item), with its
/// byte range; then the rest of the envelope, checked.
fn envelope<'a, T>(
    text: &'a str,
    prefix: &[u8],
    mut item: impl FnMut(&mut Reader<'a>) -> Option<T>,
) -> Option<Vec<(T, Span)>> {
    if !text.as_bytes().starts_with(prefix) {
        return None;
    }
    let mut reader = Reader { text, bytes: text.as_bytes(), at: prefix.len() };
    let mut items = Vec::new();
    reader.skip_space();
    if reader.eat(b']').is_none() {
        loop {
            reader.skip_space();
            let start = reader.at;
            let value = item(&mut reader)?;
            items.push((value, (start, reader.at)));
            reader.skip_space();
            if reader.eat(b',').is_none() {
                reader.eat(b']')?;
                break;
            }
        }
    }
    reader.rest_of_envelope()?;
    Some(items)
}

/// The members of the JSON object at `start` of `text`, each key with its value's byte range
/// (the value read through and checked as above), and where the object ends; `None` unless it
/// is an object the reader takes.
pub fn object_spans(text: &str, start: usize) -> Option<(Members<'_>, usize)> {
    let mut reader = Reader { text, bytes: text.as_bytes(), at: start };
    let members = reader.members()?;
    Some((members, reader.at))
}

/// The items of a JSON object that starts with `prefix` (`{"format":"...","items":[`), as
/// [`object_spans`] reads them, each with its byte range; `None` unless every item is an object
/// and the whole envelope is valid JSON as the reader takes it (as [`parse_envelope`]).
pub fn envelope_objects<'a>(text: &'a str, prefix: &[u8]) -> Option<Vec<(Members<'a>, Span)>> {
    envelope(text, prefix, |reader| reader.members())
}

/// The JSON string at `start` of `text`, unescaped; `None` if there is none there.
pub fn string_at(text: &str, start: usize) -> Option<Cow<'_, str>> {
    Reader { text, bytes: text.as_bytes(), at: start }.string()
}

/// A byte range of the input.
pub type Span = (usize, usize);

/// An object's keys, each with its value's byte range.
pub type Members<'a> = Vec<(Cow<'a, str>, Span)>;

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// After an envelope's items: its other members (no second `format` or `items`), its end.
    fn rest_of_envelope(&mut self) -> Option<()> {
        self.skip_space();
        while self.eat(b',').is_some() {
            self.skip_space();
            let key = self.string()?;
            if key == "format" || key == "items" {
                return None;
            }
            self.skip_space();
            self.eat(b':')?;
            self.value(1)?;
            self.skip_space();
        }
        self.eat(b'}')?;
        self.skip_space();
        (self.at == self.bytes.len()).then_some(())
    }

    /// The object here: each key with its value's byte range (values checked as `value`).
    fn members(&mut self) -> Option<Members<'a>> {
        self.skip_space();
        self.eat(b'{')?;
        let mut members: Members<'a> = Vec::new();
        self.skip_space();
        if self.eat(b'}').is_some() {
            return Some(members);
        }
        loop {
            self.skip_space();
            let key = self.string()?;
            if members.iter().any(|(seen, _)| *seen == key) {
                return None;
            }
            self.skip_space();
            self.eat(b':')?;
            self.skip_space();
            let value_start = self.at;
            self.skip(2)?;
            members.push((key, (value_start, self.at)));
            self.skip_space();
            if self.eat(b',').is_none() {
                self.eat(b'}')?;
                return Some(members);
            }
        }
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.bytes.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    fn literal(&mut self, word: &[u8], value: Value<'a>) -> Option<Value<'a>> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end) == Some(word)).then(|| {
            self.at = end;
            value
        })
    }

    fn value(&mut self, depth: usize) -> Option<Value<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_space();
        match *self.bytes.get(self.at)? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Value::Str),
            b't' => self.literal(b"true", Value::Bool(true)),
            b'f' => self.literal(b"false", Value::Bool(false)),
            b'n' => self.literal(b"null", Value::Null),
            _ => self.number(),
        }
    }

    /// Reads the value here through, checked as [`Reader::value`] checks it, without keeping
    /// it (only an object's keys, to refuse a duplicate).
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_space();
        match *self.bytes.get(self.at)? {
            b'{' => self.skip_object(depth),
            b'[' => self.array(depth).map(drop),
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true", Value::Null).map(drop),
            b'f' => self.literal(b"false", Value::Null).map(drop),
            b'n' => self.literal(b"null", Value::Null).map(drop),
            _ => self.number().map(drop),
        }
    }

    fn skip_object(&mut self, depth: usize) -> Option<()> {
        self.at += 1;
        let mut keys: Vec<Cow<'a, str>> = Vec::new();
        self.skip_space();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.skip_space();
            let key = self.string()?;
            if keys.contains(&key) {
                return None; // duplicate keys: leave the choice to the reference
            }
            keys.push(key);
            self.skip_space();
            self.eat(b':')?;
            self.skip(depth + 1)?;
            self.skip_space();
            if self.eat(b',').is_none() {
                self.eat(b'}')?;
                return Some(());
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<Value<'a>> {
        self.at += 1;
        let mut pairs: Vec<(Cow<'a, str>, Value<'a>)> = Vec::new();
        self.skip_space();
        if self.eat(b'}').is_some() {
            return Some(Value::Object(pairs));
        }
        loop {
            self.skip_space();
            let key = self.string()?;
            if pairs.iter().any(|(seen, _)| *seen == key) {
                return None; // duplicate keys: leave the choice to the reference
            }
            self.skip_space();
            self.eat(b':')?;
            let value = self.value(depth + 1)?;
            pairs.push((key, value));
            self.skip_space();
            if self.eat(b',').is_none() {
                self.eat(b'}')?;
                return Some(Value::Object(pairs));
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<Value<'a>> {
        self.at += 1;
        self.skip_space();
        if self.eat(b']').is_some() {
            return Some(Value::Array);
        }
        loop {
            self.skip(depth + 1)?;
            self.skip_space();
            if self.eat(b',').is_none() {
                self.eat(b']')?;
                return Some(Value::Array);
            }
        }
    }

    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.at;
        let mut owned: Option<String> = None;
        let mut run = start;
        loop {
            match *self.bytes.get(self.at)? {
                b'"' => break,
                b'\\' => {
                    let out = owned.get_or_insert_with(String::new);
                    out.push_str(&self.text[run..self.at]);
                    self.at += 1;
                    let escaped = self.escape()?;
                    owned.as_mut()?.push(escaped);
                    run = self.at;
                }
                0x00..=0x1f | 0x7f => return None,
                _ => self.at += 1,
            }
        }
        let text = match owned {
            Some(mut out) => {
                out.push_str(&self.text[run..self.at]);
                Cow::Owned(out)
            }
            None => Cow::Borrowed(&self.text[start..self.at]),
        };
        self.at += 1;
        // C1 controls (U+0080-U+009F, UTF-8 C2 80..C2 9F) are refused like C0 ones.
        let c1 = text.as_bytes().windows(2).any(|w| w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1]));
        (!c1).then_some(text)
    }

    fn escape(&mut self) -> Option<char> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        match byte {
            b'"' => Some('"'),
            b'\\' => Some('\\'),
            b'/' => Some('/'),
            b'u' => {
                let unit = self.hex4()?;
                if (0xD800..0xDC00).contains(&unit) {
                    self.eat(b'\\')?;
                    self.eat(b'u')?;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                } else {
                    char::from_u32(unit).filter(|c| !c.is_control())
                }
            }
            _ => None, // \b \f \n \r \t are control characters: refused anyway
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.at..self.at + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    fn number(&mut self) -> Option<Value<'a>> {
        let start = self.at;
        self.eat(b'-');
        match *self.bytes.get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut integral = true;
        if self.eat(b'.').is_some() {
            integral = false;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            integral = false;
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            self.required_digits()?;
        }
        let token = &self.text[start..self.at];
        if integral {
            return token.parse::<i64>().ok().map(Value::Int);
        }
        let value: f64 = token.parse().ok()?;
        value.is_finite().then_some(Value::Float(value))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn required_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

/// Appends `text` as a JSON string the way msgspec writes it: only `"` and `\` are escaped
/// (the reader refuses control characters, so no other character needs it).
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut run = 0;
    for (at, byte) in bytes.iter().enumerate() {
        if *byte == b'"' || *byte == b'\\' {
            out.extend_from_slice(&bytes[run..at]);
            out.push(b'\\');
            run = at;
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Appends `value` in decimal, as `to_string` writes it.
pub fn write_int(out: &mut Vec<u8>, value: i64) {
    let mut buffer = [0_u8; 20];
    let mut at = buffer.len();
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        buffer[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buffer[at..]);
}
