# Cython declarations for connection.py, which stays the pure-Python reference: the build
# compiles that file with these types (see setup.py and fullduplex/_compiled.py). Attributes
# are public so that Python code (the server and client subclasses) sees the same object.
cimport cython

from ..protocol.connection cimport Connection


cdef class WebSocket:
    cdef public object _close_handle
    cdef public object _close_timeout
    cdef public list _closed_waiters
    cdef public Connection _conn
    cdef public bint _copies_large_writes
    cdef public bint _debug
    cdef public list _drain_waiters
    cdef public bint _eof
    cdef public object _failure_hold
    cdef public object _fragmenting
    cdef public object _keepalive_data
    cdef public object _keepalive_handle
    cdef public double _latency
    cdef public object _logger
    cdef public object _loop
    cdef public bint _lost
    cdef public Py_ssize_t _low_water
    cdef public object _max_frame_size
    cdef public object _max_message_size
    cdef public Py_ssize_t _max_queue
    cdef public object _messages
    cdef public object _ping_interval
    cdef public object _ping_timeout
    cdef public dict _pings
    cdef public object _pong_timeout_handle
    cdef public bint _reading_paused
    cdef public bint _receiving
    cdef public object _recv_waiter
    cdef public object _request
    cdef public object _response
    cdef public object _subprotocol
    cdef public object _timers
    cdef public object _transport
    cdef public object _write_limit
    cdef public bint _write_paused
    cdef public object id
    cdef public object on_message
    cdef public object on_close
    cdef public object on_end
    cdef object __weakref__

    cpdef _deliver(self, message)
    @cython.locals(conn=Connection, chunks=list, eof=bint)
    cpdef _flush(self)
    cpdef Connection _nowait_connection(self)
    @cython.locals(conn=Connection)
    cpdef send_nowait(self, message)
    @cython.locals(conn=Connection)
    cpdef send_prepared_nowait(self, frame)
