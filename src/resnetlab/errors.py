"""The one exception type for problems a user can cause and fix.

The CLI turns a ResnetlabError into a single `error: ...` line and a non-zero exit; anything else
is a bug and keeps its traceback.
"""


class ResnetlabError(Exception):
    """A user-fixable problem: the message names what is wrong and how to fix it.

    The message is kept on one line: text quoted from other libraries' exceptions (pickle, PIL,
    torch) may hold line breaks, which would split the CLI's one `error:` line."""

    def __init__(self, message: str = "", *args):
        super().__init__(" ".join(str(message).split()), *args)
