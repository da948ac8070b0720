"""Adapters: the outside world behind one small interface each: TikTok (`tiktok/`), the
bounded HTTP call (`outbound/`), Fernet (`crypto.py`), run locks (`locks.py`), the proof
that the keys read the store (`keycheck.py`), and the factories that build them from
settings (`context.py`). They import storage and base, never a service or a face.
"""
