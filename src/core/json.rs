//! The token body's JSON: a strict reader that keeps only what `fetch::parse` looks at (the top
//! level's kind, and its last `access_token` and `expires_in`), validating everything else.
//!
//! It takes and refuses exactly the bytes `serde_json::from_slice::<serde_json::Value>` does (the
//! parser the core used before, kept as the oracle of `fetch_properties.rs`), and reads numbers to
//! the same f64s, by the same steps. Why not serde_json itself: V8 compiles each wasm function at
//! its first call, and reading a body through `serde_json::Value` ran ~45 functions (~14 KB of
//! code: the deserializer, the visitor, a BTreeMap) on the first token's way; this is a handful.
//! README "Performance" has the figures.

use alloc::string::String;
use alloc::vec::Vec;

/// A top-level field's value, as far as `fetch::parse` judges it.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    String(String),
    /// An integer written without fraction or exponent that fits a u64.
    Unsigned(u64),
    /// Any other number: as serde_json reads it, a negative integer included.
    Float(f64),
    /// null, a boolean, an array or an object: its JSON type's name.
    Other(&'static str),
}

impl Field {
    pub fn type_name(&self) -> &'static str {
        match self {
            Field::String(_) => "string",
            Field::Unsigned(_) | Field::Float(_) => "number",
            Field::Other(name) => name,
        }
    }
}

/// The last value of each field the core reads; a key given twice counts with its last value, as
/// in a `serde_json::Map`.
#[derive(Debug, Default, PartialEq)]
pub struct Fields {
    pub access_token: Option<Field>,
    pub expires_in: Option<Field>,
}

/// The body is not JSON (any syntax error, a number out of f64's range, nesting deeper than
/// serde_json's 127 levels, a string that is not UTF-8 or holds a lone surrogate escape).
#[derive(Debug, PartialEq)]
pub struct NotJson;

/// Reads a whole body: its fields when it is a JSON object, None when it is JSON of another kind.
pub fn read(body: &[u8]) -> Result<Option<Fields>, NotJson> {
    let mut reader = Reader {
        bytes: body,
        at: 0,
        depth_left: MAX_DEPTH,
    };
    let fields = if reader.peek_past_whitespace() == Some(b'{') {
        let mut fields = Fields::default();
        reader.nested(|r| r.object(Some(&mut fields)))?;
        Some(fields)
    } else {
        reader.value()?;
        None
    };
    match reader.peek_past_whitespace() {
        None => Ok(fields),
        Some(_) => Err(NotJson),
    }
}

/// serde_json's recursion limit: arrays and objects nest at most 127 deep.
const MAX_DEPTH: u8 = 128;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    depth_left: u8,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Result<u8, NotJson> {
        let byte = self.peek().ok_or(NotJson)?;
        self.at += 1;
        Ok(byte)
    }

    fn peek_past_whitespace(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
        self.peek()
    }

    fn expect(&mut self, byte: u8) -> Result<(), NotJson> {
        match self.next()? {
            b if b == byte => Ok(()),
            _ => Err(NotJson),
        }
    }

    fn value(&mut self) -> Result<Field, NotJson> {
        match self.peek_past_whitespace().ok_or(NotJson)? {
            b'n' => self.word(b"null", Field::Other("null")),
            b't' => self.word(b"true", Field::Other("boolean")),
            b'f' => self.word(b"false", Field::Other("boolean")),
            b'"' => Ok(Field::String(self.string()?)),
            b'[' => {
                self.nested(Self::array)?;
                Ok(Field::Other("array"))
            }
            b'{' => {
                self.nested(|r| r.object(None))?;
                Ok(Field::Other("object"))
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(NotJson),
        }
    }

    fn word(&mut self, word: &[u8], field: Field) -> Result<Field, NotJson> {
        if !self.bytes[self.at..].starts_with(word) {
            return Err(NotJson);
        }
        self.at += word.len();
        Ok(field)
    }

    /// An array or object one level deeper, within serde_json's limit.
    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Result<(), NotJson>) -> Result<(), NotJson> {
        self.depth_left -= 1;
        if self.depth_left == 0 {
            return Err(NotJson);
        }
        f(self)?;
        self.depth_left += 1;
        Ok(())
    }

    fn array(&mut self) -> Result<(), NotJson> {
        self.expect(b'[')?;
        if self.peek_past_whitespace() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.value()?;
            match self.peek_past_whitespace() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(NotJson),
            }
        }
    }

    /// An object; the fields the core reads are kept in `fields` when given (the top level).
    fn object(&mut self, mut fields: Option<&mut Fields>) -> Result<(), NotJson> {
        self.expect(b'{')?;
        if self.peek_past_whitespace() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            if self.peek_past_whitespace() != Some(b'"') {
                return Err(NotJson);
            }
            let key = self.string()?;
            if self.peek_past_whitespace() != Some(b':') {
                return Err(NotJson);
            }
            self.at += 1;
            let value = self.value()?;
            if let Some(fields) = fields.as_deref_mut() {
                match key.as_str() {
                    "access_token" => fields.access_token = Some(value),
                    "expires_in" => fields.expires_in = Some(value),
                    _ => {}
                }
            }
            match self.peek_past_whitespace() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(NotJson),
            }
        }
    }

    /// A string, its escapes decoded: no control characters, UTF-8, surrogate escapes in pairs.
    fn string(&mut self) -> Result<String, NotJson> {
        self.expect(b'"')?;
        let mut text = Vec::new();
        loop {
            match self.next()? {
                b'"' => return String::from_utf8(text).map_err(|_| NotJson),
                b'\\' => {
                    let decoded = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\x08',
                        b'f' => '\x0c',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(NotJson),
                    };
                    let mut utf8 = [0; 4];
                    text.extend_from_slice(decoded.encode_utf8(&mut utf8).as_bytes());
                }
                0x00..=0x1f => return Err(NotJson),
                byte => text.push(byte),
            }
        }
    }

    /// After `\u`: a character, or a surrogate pair written as two escapes.
    fn unicode_escape(&mut self) -> Result<char, NotJson> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                self.expect(b'\\')?;
                self.expect(b'u')?;
                match self.hex4()? {
                    low @ 0xDC00..=0xDFFF => 0x1_0000 + ((first - 0xD800) << 10 | (low - 0xDC00)),
                    _ => return Err(NotJson),
                }
            }
            _ => first,
        };
        // None for a lone trailing surrogate (0xDC00..=0xDFFF).
        char::from_u32(code).ok_or(NotJson)
    }

    fn hex4(&mut self) -> Result<u32, NotJson> {
        let mut n = 0;
        for _ in 0..4 {
            let digit = char::from(self.next()?).to_digit(16).ok_or(NotJson)?;
            n = n * 16 + digit;
        }
        Ok(n)
    }

    // Numbers, step by step as serde_json 1.0 reads them without its float_roundtrip feature
    // (`Deserializer::parse_integer` and what it calls): the digits of the significand while they
    // fit a u64 (the rest only move the exponent), then one multiplication or division by a power
    // of ten. The f64 that comes out, and whether it is out of range, are serde_json's, to the bit.
    // What only a fraction, an exponent or a very long integer needs is out of line: servers
    // write `"expires_in":3600`, and V8 compiles a wasm function whole at its first call.

    fn number(&mut self) -> Result<Field, NotJson> {
        let positive = self.peek() != Some(b'-');
        if !positive {
            self.at += 1;
        }
        let mut significand = match self.next()? {
            b'0' if matches!(self.peek(), Some(b'0'..=b'9')) => return Err(NotJson),
            digit @ b'0'..=b'9' => u64::from(digit - b'0'),
            _ => return Err(NotJson),
        };
        if significand != 0 {
            while let Some(digit) = self.digit() {
                if overflows(significand, digit, u64::MAX) {
                    return self.long_integer(positive, significand).map(Field::Float);
                }
                self.at += 1;
                significand = significand * 10 + digit;
            }
        }
        match self.peek() {
            Some(b'.') => self.decimal(positive, significand, 0).map(Field::Float),
            Some(b'e' | b'E') => self.exponent(positive, significand, 0).map(Field::Float),
            _ if positive => Ok(Field::Unsigned(significand)),
            // -0, and integers below i64::MIN, are floats in serde_json.
            _ => match (significand as i64).wrapping_neg() {
                negative if negative < 0 => Ok(Field::Float(negative as f64)),
                _ => Ok(Field::Float(-(significand as f64))),
            },
        }
    }

    /// The next byte's value if it is a digit (not consumed).
    fn digit(&self) -> Option<u64> {
        match self.peek()? {
            digit @ b'0'..=b'9' => Some(u64::from(digit - b'0')),
            _ => None,
        }
    }

    fn skip_digits(&mut self) {
        while self.digit().is_some() {
            self.at += 1;
        }
    }

    /// An integer part too long for a u64: the digits past it count as powers of ten.
    #[inline(never)]
    fn long_integer(&mut self, positive: bool, significand: u64) -> Result<f64, NotJson> {
        let mut exponent = 0;
        while self.digit().is_some() {
            self.at += 1;
            exponent += 1;
        }
        match self.peek() {
            Some(b'.') => self.decimal(positive, significand, exponent),
            Some(b'e' | b'E') => self.exponent(positive, significand, exponent),
            _ => from_parts(positive, significand, exponent),
        }
    }

    /// At the `.`: the fraction's digits join the significand while it has room.
    #[inline(never)]
    fn decimal(
        &mut self,
        positive: bool,
        mut significand: u64,
        exponent: i32,
    ) -> Result<f64, NotJson> {
        self.at += 1;
        if self.digit().is_none() {
            return Err(NotJson);
        }
        let mut fraction_digits = 0;
        while let Some(digit) = self.digit() {
            if overflows(significand, digit, u64::MAX) {
                self.skip_digits();
                break;
            }
            self.at += 1;
            significand = significand * 10 + digit;
            fraction_digits += 1;
        }
        let exponent = exponent - fraction_digits;
        match self.peek() {
            Some(b'e' | b'E') => self.exponent(positive, significand, exponent),
            _ => from_parts(positive, significand, exponent),
        }
    }

    /// At the `e`.
    #[inline(never)]
    fn exponent(
        &mut self,
        positive: bool,
        significand: u64,
        exponent: i32,
    ) -> Result<f64, NotJson> {
        self.at += 1;
        let up = match self.peek() {
            Some(b'+') => {
                self.at += 1;
                true
            }
            Some(b'-') => {
                self.at += 1;
                false
            }
            _ => true,
        };
        let mut written = match self.next()? {
            digit @ b'0'..=b'9' => i32::from(digit - b'0'),
            _ => return Err(NotJson),
        };
        while let Some(digit) = self.digit() {
            self.at += 1;
            if overflows(written as u64, digit, i32::MAX as u64) {
                // Beyond i32: infinity, an error, or zero.
                if significand != 0 && up {
                    return Err(NotJson);
                }
                self.skip_digits();
                return Ok(if positive { 0.0 } else { -0.0 });
            }
            written = written * 10 + digit as i32;
        }
        let exponent = if up {
            exponent.saturating_add(written)
        } else {
            exponent.saturating_sub(written)
        };
        from_parts(positive, significand, exponent)
    }
}

/// Whether `value * 10 + digit` exceeds `max` (serde_json's `overflow!`).
fn overflows(value: u64, digit: u64, max: u64) -> bool {
    value >= max / 10 && (value > max / 10 || digit > max % 10)
}

/// `significand × 10^exponent` by serde_json's steps; out of f64's range is an error.
fn from_parts(positive: bool, significand: u64, mut exponent: i32) -> Result<f64, NotJson> {
    let mut f = significand as f64;
    loop {
        match POW10.get(exponent.unsigned_abs() as usize) {
            Some(&pow) => {
                if exponent >= 0 {
                    f *= pow;
                    if f.is_infinite() {
                        return Err(NotJson);
                    }
                } else {
                    f /= pow;
                }
                break;
            }
            None => {
                if f == 0.0 {
                    break;
                }
                if exponent >= 0 {
                    return Err(NotJson);
                }
                f /= 1e308;
                exponent += 308;
            }
        }
    }
    Ok(if positive { f } else { -f })
}

/// The powers of ten that f64 holds, each as its literal rounds (serde_json's table).
static POW10: [f64; 309] = [
    1e000, 1e001, 1e002, 1e003, 1e004, 1e005, 1e006, 1e007, 1e008, 1e009, //
    1e010, 1e011, 1e012, 1e013, 1e014, 1e015, 1e016, 1e017, 1e018, 1e019, //
    1e020, 1e021, 1e022, 1e023, 1e024, 1e025, 1e026, 1e027, 1e028, 1e029, //
    1e030, 1e031, 1e032, 1e033, 1e034, 1e035, 1e036, 1e037, 1e038, 1e039, //
    1e040, 1e041, 1e042, 1e043, 1e044, 1e045, 1e046, 1e047, 1e048, 1e049, //
    1e050, 1e051, 1e052, 1e053, 1e054, 1e055, 1e056, 1e057, 1e058, 1e059, //
    1e060, 1e061, 1e062, 1e063, 1e064, 1e065, 1e066, 1e067, 1e068, 1e069, //
    1e070, 1e071, 1e072, 1e073, 1e074, 1e075, 1e076, 1e077, 1e078, 1e079, //
    1e080, 1e081, 1e082, 1e083, 1e084, 1e085, 1e086, 1e087, 1e088, 1e089, //
    1e090, 1e091, 1e092, 1e093, 1e094, 1e095, 1e096, 1e097, 1e098, 1e099, //
    1e100, 1e101, 1e102, 1e103, 1e104, 1e105, 1e106, 1e107, 1e108, 1e109, //
    1e110, 1e111, 1e112, 1e113, 1e114, 1e115, 1e116, 1e117, 1e118, 1e119, //
    1e120, 1e121, 1e122, 1e123, 1e124, 1e125, 1e126, 1e127, 1e128, 1e129, //
    1e130, 1e131, 1e132, 1e133, 1e134, 1e135, 1e136, 1e137, 1e138, 1e139, //
    1e140, 1e141, 1e142, 1e143, 1e144, 1e145, 1e146, 1e147, 1e148, 1e149, //
    1e150, 1e151, 1e152, 1e153, 1e154, 1e155, 1e156, 1e157, 1e158, 1e159, //
    1e160, 1e161, 1e162, 1e163, 1e164, 1e165, 1e166, 1e167, 1e168, 1e169, //
    1e170, 1e171, 1e172, 1e173, 1e174, 1e175, 1e176, 1e177, 1e178, 1e179, //
    1e180, 1e181, 1e182, 1e183, 1e184, 1e185, 1e186, 1e187, 1e188, 1e189, //
    1e190, 1e191, 1e192, 1e193, 1e194, 1e195, 1e196, 1e197, 1e198, 1e199, //
    1e200, 1e201, 1e202, 1e203, 1e204, 1e205, 1e206, 1e207, 1e208, 1e209, //
    1e210, 1e211, 1e212, 1e213, 1e214, 1e215, 1e216, 1e217, 1e218, 1e219, //
    1e220, 1e221, 1e222, 1e223, 1e224, 1e225, 1e226, 1e227, 1e228, 1e229, //
    1e230, 1e231, 1e232, 1e233, 1e234, 1e235, 1e236, 1e237, 1e238, 1e239, //
    1e240, 1e241, 1e242, 1e243, 1e244, 1e245, 1e246, 1e247, 1e248, 1e249, //
    1e250, 1e251, 1e252, 1e253, 1e254, 1e255, 1e256, 1e257, 1e258, 1e259, //
    1e260, 1e261, 1e262, 1e263, 1e264, 1e265, 1e266, 1e267, 1e268, 1e269, //
    1e270, 1e271, 1e272, 1e273, 1e274, 1e275, 1e276, 1e277, 1e278, 1e279, //
    1e280, 1e281, 1e282, 1e283, 1e284, 1e285, 1e286, 1e287, 1e288, 1e289, //
    1e290, 1e291, 1e292, 1e293, 1e294, 1e295, 1e296, 1e297, 1e298, 1e299, //
    1e300, 1e301, 1e302, 1e303, 1e304, 1e305, 1e306, 1e307, 1e308,
];
