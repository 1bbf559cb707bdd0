"""The in-memory channel layer (one process, no Redis), with cheaper expiry.

Channels' own InMemoryChannelLayer scans every channel and group for expired messages on each
receive and group send: with 200 browsers on a drama that scan, repeated for every delivery,
dominates the cost of an event. Expiry is about minutes (messages nobody read, members that
left), so scanning at most once a second loses nothing.
"""

import time

from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

CLEAN_EVERY_S = 1.0


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    _cleaned_at = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at >= CLEAN_EVERY_S:
            self._cleaned_at = now
            super()._clean_expired()
