"""Reminder channels: signed webhook, Teams Workflows, Slack and SMTP.

``config`` (channel settings), ``message`` (:class:`~notifications.message.Notification`),
``channels`` (one sender per channel type, :class:`~notifications.channels.DeliveryError`) and
``dispatcher`` (:func:`~notifications.dispatcher.deliver` to every channel at once). Nothing is
re-exported here so that importing the light ``config``/``message`` modules (settings, workflow
code) does not pull in aiohttp and smtplib.
"""
