"""Notifications: the in-app centre (the bell), e-mail now or in a daily digest, per-user
preferences per type; and the admins' "Sistema" page (monitoring)."""
