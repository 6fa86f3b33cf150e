//! Link credit bookkeeping of one connection (pure): how much credit to grant, and when.
//!
//! At most `window` messages are unsettled at once. While the link flows, it is topped up to
//! `window − in flight` once at least half of the window has been used (one flow frame per half
//! window, not one per message). While the sink's circuit is open, and while draining for SIGTERM,
//! no credit is granted; half-open lets one message at a time through as the sink's probe.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Flowing,
    /// The sink's circuit is half-open: one message in flight at most.
    Probing,
    /// The sink's circuit is open: nothing new.
    Paused,
    /// SIGTERM: nothing new, ever again.
    Draining,
}

#[derive(Debug, Clone)]
pub struct CreditBook {
    window: u32,
    mode: Mode,
    in_flight: u32,
    /// Credit the peer still holds (granted and not yet used).
    outstanding: u32,
}

impl CreditBook {
    /// A freshly attached link, before its first grant (see [`CreditBook::initial`]).
    pub fn new(window: u32, mode: Mode) -> CreditBook {
        CreditBook { window: window.max(1), mode, in_flight: 0, outstanding: 0 }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn limit(&self) -> u32 {
        match self.mode {
            Mode::Flowing => self.window,
            Mode::Probing => 1,
            Mode::Paused | Mode::Draining => 0,
        }
    }

    /// The first grant after attaching.
    pub fn initial(&mut self) -> Option<u32> {
        let target = self.limit().saturating_sub(self.in_flight);
        (target > 0).then(|| self.grant(target))
    }

    /// A delivery arrived; it is in flight until [`CreditBook::settled`].
    pub fn received(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.in_flight += 1;
    }

    /// A delivery was settled: the credit to grant now, if any.
    pub fn settled(&mut self) -> Option<u32> {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.top_up()
    }

    /// Whether a delivery that arrives now may go to the sink (else it is released at once: it was
    /// on the wire before the credit stop reached the peer).
    pub fn admits(&self) -> bool {
        self.in_flight <= self.limit() || self.mode == Mode::Draining
    }

    /// Whether nothing can arrive any more: no credit left with the peer and nothing in flight
    /// (a drained link can close without cutting off a delivery).
    pub fn is_drained(&self) -> bool {
        self.outstanding == 0 && self.in_flight == 0
    }

    /// A new mode: the credit to grant now, if any (never less than the peer holds).
    pub fn set_mode(&mut self, mode: Mode) -> Option<u32> {
        if self.mode == mode || self.mode == Mode::Draining {
            return None;
        }
        self.mode = mode;
        let target = self.limit().saturating_sub(self.in_flight);
        (target > self.outstanding).then(|| self.grant(target))
    }

    fn top_up(&mut self) -> Option<u32> {
        let target = self.limit().saturating_sub(self.in_flight);
        let due = match self.mode {
            Mode::Flowing => target >= self.outstanding + self.window.div_ceil(2),
            Mode::Probing => target > self.outstanding,
            Mode::Paused | Mode::Draining => false,
        };
        due.then(|| self.grant(target))
    }

    fn grant(&mut self, credit: u32) -> u32 {
        self.outstanding = credit;
        credit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Step {
        Initial,
        Receive(u32),
        Settle(u32),
        To(Mode),
    }
    use Step::{Initial, Receive, Settle, To};

    /// The credit granted at each step (`None`: no flow frame).
    fn run(window: u32, steps: &[Step]) -> Vec<Option<u32>> {
        let mut book = CreditBook::new(window, Mode::Flowing);
        steps
            .iter()
            .map(|step| match *step {
                Initial => book.initial(),
                Receive(n) => {
                    (0..n).for_each(|_| book.received());
                    None
                }
                Settle(n) => (0..n).fold(None, |last, _| book.settled().or(last)),
                To(mode) => book.set_mode(mode),
            })
            .collect()
    }

    #[test]
    fn credit_follows_the_table() {
        /// name, window, steps, the credit granted at each step
        type Row<'a> = (&'a str, u32, &'a [Step], &'a [Option<u32>]);
        let table: &[Row<'_>] = &[
            ("the first grant is the window", 10, &[Initial], &[Some(10)]),
            ("no flow frame before half the window is used", 10, &[Initial, Receive(4), Settle(4)], &[Some(10), None, None]),
            ("topped up once half is used", 10, &[Initial, Receive(5), Settle(5)], &[Some(10), None, Some(10)]),
            ("in flight counts against the window", 10, &[Initial, Receive(8), Settle(3)], &[Some(10), None, None]),
            ("unsettled never exceed the window", 10, &[Initial, Receive(10), Settle(5)], &[Some(10), None, Some(5)]),
            (
                "an open circuit stops the top-ups without withdrawing the credit",
                10,
                &[Initial, Receive(3), To(Mode::Paused), Settle(3), Receive(7), Settle(7)],
                &[Some(10), None, None, None, None, None],
            ),
            (
                "half-open grants one once the peer's credit ran out",
                10,
                &[Initial, To(Mode::Paused), Receive(10), Settle(10), To(Mode::Probing)],
                &[Some(10), None, None, None, Some(1)],
            ),
            ("half-open does not lower the credit the peer holds", 10, &[Initial, Receive(3), To(Mode::Probing)], &[Some(10), None, None]),
            (
                "half-open grants the next only after the probe settled",
                10,
                &[Initial, To(Mode::Paused), Receive(10), Settle(10), To(Mode::Probing), Receive(1), Settle(1)],
                &[Some(10), None, None, None, Some(1), None, Some(1)],
            ),
            (
                "closing the circuit grants the window at once",
                10,
                &[Initial, To(Mode::Paused), Receive(10), Settle(10), To(Mode::Probing), To(Mode::Flowing)],
                &[Some(10), None, None, None, Some(1), Some(10)],
            ),
            (
                "draining never grants again",
                10,
                &[Initial, Receive(2), To(Mode::Draining), Settle(2), To(Mode::Flowing)],
                &[Some(10), None, None, None, None],
            ),
            ("a window of one", 1, &[Initial, Receive(1), Settle(1)], &[Some(1), None, Some(1)]),
        ];
        for (name, window, steps, grants) in table {
            assert_eq!(run(*window, steps), grants.to_vec(), "{name}");
        }
    }

    #[test]
    fn a_draining_link_is_drained_only_when_the_peer_holds_no_credit_and_nothing_is_in_flight() {
        let mut book = CreditBook::new(2, Mode::Flowing);
        book.initial();
        book.received();
        book.set_mode(Mode::Draining);
        book.settled();
        assert!(!book.is_drained(), "the peer may still send against its last credit");
        book.received();
        assert!(!book.is_drained(), "one in flight");
        book.settled();
        assert!(book.is_drained());
    }

    #[test]
    fn deliveries_past_the_limit_are_not_admitted_while_paused() {
        let mut book = CreditBook::new(10, Mode::Flowing);
        book.initial();
        book.set_mode(Mode::Paused);
        book.received();
        assert!(!book.admits(), "a delivery that was on the wire when the circuit opened");
        let mut book = CreditBook::new(10, Mode::Flowing);
        book.initial();
        book.received();
        assert!(book.admits());
    }
}
