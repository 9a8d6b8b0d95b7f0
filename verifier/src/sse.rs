//! A Server-Sent Events parser (the WHATWG event-stream format), fed with
//! whatever chunks arrive. Lines longer than a limit are an error, so a
//! broken or hostile peer cannot make it buffer without bound.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LineTooLong;

pub(crate) struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next is not a
    /// second line end.
    after_cr: bool,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    max_line: usize,
}

impl Parser {
    pub(crate) fn new(max_line: usize) -> Parser {
        Parser {
            line: Vec::new(),
            after_cr: false,
            id: None,
            event: None,
            data: None,
            max_line,
        }
    }

    /// Feeds bytes; returns the events completed by them.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, LineTooLong> {
        let mut events = Vec::new();
        for &byte in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&line) {
                        events.push(event);
                    }
                }
                _ => {
                    if self.line.len() >= self.max_line {
                        return Err(LineTooLong);
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(events)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Event> {
        if line.is_empty() {
            let data = self.data.take();
            let event = self.event.take();
            let id = self.id.take();
            // A block without data dispatches nothing (a comment, `retry:`).
            return data.map(|data| Event {
                id,
                event: event.unwrap_or_else(|| "message".to_owned()),
                data,
            });
        }
        if line.starts_with(b":") {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_anywhere_and_skips_comments() {
        let text = "retry: 1000\n: connected\n\nid: 7\nevent: revocation\ndata: {\"a\":1}\n\n: keep-alive\r\n\r\ndata: x\r\ndata: y\r\n\r\n";
        for split in 0..text.len() {
            let mut parser = Parser::new(1024);
            let mut events = parser.push(&text.as_bytes()[..split]).unwrap();
            events.extend(parser.push(&text.as_bytes()[split..]).unwrap());
            assert_eq!(
                events,
                [
                    Event {
                        id: Some("7".into()),
                        event: "revocation".into(),
                        data: "{\"a\":1}".into()
                    },
                    Event {
                        id: None,
                        event: "message".into(),
                        data: "x\ny".into()
                    }
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn refuses_endless_lines() {
        let mut parser = Parser::new(16);
        assert_eq!(parser.push(&[b'a'; 17]), Err(LineTooLong));
    }
}
