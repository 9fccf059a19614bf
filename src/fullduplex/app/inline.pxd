# Cython declarations for inline.py, which stays the pure-Python reference (see setup.py and
# fullduplex/_compiled.py): the per-message path of the App's native sessions, compiled.
cimport cython

from ..asyncio.connection cimport WebSocket


cdef class Conversation:
    cdef public object _app
    cdef public bint _busy
    cdef public bint _coroutine
    cdef public object _decode
    cdef public object _encode
    cdef public object _endpoint
    cdef public object _handler
    cdef public bint _inline
    cdef public object _key
    cdef public object _metrics
    cdef public object _traffic
    cdef public object _session
    cdef public object _task
    cdef public WebSocket _ws
