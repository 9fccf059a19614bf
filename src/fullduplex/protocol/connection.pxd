# Cython declarations for connection.py, which stays the pure-Python reference: the build
# compiles that file with these types (see setup.py and fullduplex/_compiled.py). Attributes
# are public so that Python code sees the same object either way.
cimport cython


cdef class Connection:
    cdef public bint _closing_eof_sent
    cdef public bint _compressed
    cdef public bint _debug
    cdef public object _decoder
    cdef public object _deflate
    cdef public bint _discarding
    cdef public list _events
    cdef public bint _frame_limit_derived
    cdef public object _logger
    cdef public bint _mask
    cdef public object _max_message_size
    cdef public int _message_opcode
    cdef public list _message_parts
    cdef public Py_ssize_t _message_size
    cdef public list _out
    cdef public object _parser
    cdef public Py_ssize_t _partial_checked
    cdef public object _partial_decoder
    cdef public object _pending_failure
    cdef public object _role
    cdef public bint _send_compressed
    cdef public int _send_opcode
    cdef public object _state
    cdef public object close_rcvd
    cdef public object close_sent
    cdef public object failure

    @cython.locals(events=list, frames=list, opcode=int, fin=bint, rsv1=bint)
    cpdef receive_data(self, data)
    cpdef list events_received(self)
    cpdef list data_to_send(self, bint apply_failure=*)
    cpdef _write(self, int opcode, payload, bint fin, bint rsv1)
    cpdef _queue_event(self, event)
    cpdef _queue_data(self, data)
    @cython.locals(compressed=bint, rsv1=bint)
    cpdef _send_data(self, int opcode, payload, bint fin)
    cpdef send_text(self, data, bint fin=*)
    cpdef send_binary(self, data, bint fin=*)
    cpdef send_prepared(self, frame)
