"""A stand-in for the remote end of live output (an RIEngineOutput target or
an RIOutputListener): keeps each ``output`` message and answers only when
the test says so, as a slow peer would."""
from twisted.internet import defer


class OutputReceiver:
    """Keeps every message sent with ``callRemote("output", chunks)``."""

    def __init__(self):
        self.messages = []
        self.answers = []   # the Deferred of each message not answered yet

    def callRemote(self, method, chunks):
        assert method == "output", method
        self.messages.append(list(chunks))
        d = defer.Deferred()
        self.answers.append(d)
        return d

    def answer(self):
        """Answer the oldest message."""
        self.answers.pop(0).callback(None)

    def answer_all(self):
        answers, self.answers = self.answers, []
        for d in answers:
            d.callback(None)
