//! Sub-interpreter safety: two own-GIL sub-interpreters on two threads at once, each with
//! its own context and types, driving `wsgi.input`, `start_response`, `write` and
//! `wsgi.errors` concurrently, then ended with `Py_EndInterpreter` (which drops each
//! context under its own interpreter: nothing is leaked).

#[cfg(Py_3_12)]
mod own_gil {
    use std::sync::{Arc, Barrier};

    use pyo3::prelude::*;
    use pyo3::types::PyModule;

    use crate::ffi::pytype::Owned;
    use crate::ffi::pytype::testing::{FakeRequest, OwnGil, leaked, start_python};
    use crate::wsgi::{Context, Input, Link, Options, Response};

    const APP: &std::ffi::CStr = c"
def handle(input, start_response, errors, file_wrapper, n):
    body = input.read(3) + input.read()
    assert input.readline() == b''
    write = start_response('200 OK', [('Content-Type', 'text/plain')])
    write(body.upper())
    errors.write('request %d\\n' % n)
    print('printed', n)
    wrapped = list(file_wrapper(__import__('io').BytesIO(b'abcdef'), 4))
    assert wrapped == [b'abcd', b'ef'], wrapped
    return type(input).__name__, type(start_response).__name__, repr(errors)
";

    /// Serves `requests` fake requests in a new own-GIL interpreter; returns the addresses
    /// of its `wsgi.input` and `start_response` types.
    fn serve(thread: usize, requests: usize, start: &Barrier) -> (usize, usize) {
        let interp = OwnGil::new().expect("an own-GIL interpreter");
        start.wait();
        let types = interp.run(|py| {
            let options = Options {
                debug: false,
                redirect_std_streams: true,
            };
            let ctx = Context::install(py, options).expect("the context installs");
            let app = PyModule::from_code(py, APP, c"app.py", c"app")
                .and_then(|m| m.getattr("handle"))
                .expect("the app");
            for n in 0..requests {
                let body = format!("body {n} of thread {thread}");
                let request = FakeRequest::new(body.as_bytes());
                let link = Link::new(request.ecb());
                let input = Input::new(Arc::clone(&link), request.ecb().total_bytes());
                let input = ctx.types.input.instantiate(py, input).unwrap();
                let write = ctx.environ.keys.write.clone_ref(py);
                let response = Response::new(Arc::clone(&link), true, write);
                let response = ctx.types.response.instantiate(py, response).unwrap();
                let wrapper = ctx.types.file_wrapper.type_object(py);
                let errors = ctx.errors(py);
                let names: (String, String, String) = app
                    .call1((
                        input.as_any(),
                        response.as_any(),
                        errors.as_any(),
                        wrapper,
                        n,
                    ))
                    .and_then(|r| r.extract())
                    .unwrap_or_else(|e| panic!("the app failed: {e:?}"));
                assert_eq!(
                    names,
                    (
                        "Input".to_owned(),
                        "StartResponse".to_owned(),
                        "<pyisapie log writer wsgi.errors>".to_owned()
                    )
                );
                link.close();
                let (head, written) = request.sent();
                assert!(head.starts_with(b"200 OK\r\n"), "{head:?}");
                let upper = body.to_uppercase();
                let chunk = format!("{:x}\r\n{upper}\r\n", upper.len());
                assert_eq!(String::from_utf8_lossy(&written), chunk);
            }
            let stdout = py.import("sys").and_then(|s| s.getattr("stdout")).unwrap();
            assert_eq!(
                stdout.repr().unwrap().to_string(),
                "<pyisapie log writer <stdout>>"
            );
            (
                ctx.types.input.type_object(py).as_ptr() as usize,
                ctx.types.response.type_object(py).as_ptr() as usize,
            )
        });
        drop(interp);
        // Every owned reference of the context (dropped by Py_EndInterpreter) was released
        // under its own interpreter.
        assert_eq!(leaked(), 0);
        types
    }

    #[test]
    fn two_own_gil_interpreters_serve_concurrently() {
        start_python();
        let start = Arc::new(Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let start = Arc::clone(&start);
                std::thread::spawn(move || serve(t, 1000, &start))
            })
            .collect();
        let types: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        // Each interpreter made its own types.
        assert_ne!(types[0].0, types[1].0);
        assert_ne!(types[0].1, types[1].1);
    }

    #[test]
    fn an_owned_reference_carried_out_of_its_interpreter_is_leaked_not_released() {
        start_python();
        std::thread::spawn(|| {
            let interp = OwnGil::new().expect("an own-GIL interpreter");
            let escaped = interp.run(|py| Owned::new(pyo3::types::PyString::new(py, "x")));
            assert_eq!(leaked(), 0);
            // No thread state is current here: releasing it would touch the
            // interpreter without its GIL.
            drop(escaped);
            assert_eq!(leaked(), 1);
        })
        .join()
        .unwrap();
    }
}

#[cfg(not(Py_3_12))]
#[test]
fn two_own_gil_interpreters_serve_concurrently() {
    println!(
        "skipped: own-GIL sub-interpreters need Python 3.12 or later; this build is against {} \
         (build with PYO3_PYTHON pointing at a 3.12+ to run it)",
        env!("PYISAPIE_PYTHON_VERSION")
    );
}
