"""``edge-agent tui``: the site technician's terminal (and browser) view of the agents of a site.

:mod:`.state` holds what the agents report (no Textual import), :mod:`.feed` feeds it from the MQTT control
plane, :mod:`.app` and :mod:`.screens` show it and send commands.
"""
