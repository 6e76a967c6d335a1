"""The messaging pages: the inbox (``inbox``), Settings → WhatsApp (``whatsapp``) and
Settings → Message templates (``templates``). Each module has its own ``router``; the
application wires them (``lovedcrm.app.ROUTERS``). Templates: ``messaging/templates/``,
rendered as ``"messaging/<name>.html"``.
"""
