#if os(Linux)
    import CLibPQ
    import Foundation
    import Glibc
    import NIOConcurrencyHelpers

    /// One thread that waits, with epoll, on the sockets of every connection that
    /// has a pipeline in flight, and reads each answer as it arrives.
    ///
    /// The caller sends its pipeline on its own thread without blocking
    /// (`Connection.sendPipeline(_:blocking: false)`), then `run` arms the
    /// connection's socket (one shot). One wake-up of the watcher serves every
    /// answer that arrived meanwhile, where a blocking pipeline costs a wake-up of
    /// a pool thread to send and a sleep in `poll()` until its own answer.
    ///
    /// Plain and TLS connections come here: `Connection.readPipeline` takes the
    /// bytes OpenSSL has decrypted before it waits again, as they no longer make
    /// the socket readable. GSSAPI-encrypted ones do not (libpq keeps their
    /// decrypted bytes where nothing can see them): `ConnectionPool` runs those
    /// pipelines blocking.
    ///
    /// The thread runs until `stop`: a pool that is never shut down keeps it,
    /// as it keeps its `NIOThreadPool`'s threads.
    final class PipelineWatcher: Sendable {
        typealias Completion = @Sendable (Result<[QueryResult], any Error>) -> Void

        /// A pipeline in flight. Touched by the caller until its socket is armed,
        /// then only by the watcher's thread.
        private final class Job: @unchecked Sendable {
            let connection: Connection
            let completion: Completion
            /// Part of the pipeline is still in libpq's buffer, to send when the socket is writable.
            var unsent: Bool

            init(connection: Connection, completion: @escaping Completion, unsent: Bool) {
                self.connection = connection
                self.completion = completion
                self.unsent = unsent
            }
        }

        private struct State {
            /// Pipelines in flight, by an id never used twice (the epoll event's
            /// data). Not by socket: libpq closes a broken connection's socket
            /// while its job is still being failed, and a new connection may get
            /// the same number at once.
            var jobs: [UInt64: Job] = [:]
            var lastID: UInt64 = 0
            var stopping = false
        }

        /// The eventfd's id in the epoll set; jobs count up from 1.
        private static let wakeID: UInt64 = 0

        private let epoll: Int32
        /// An eventfd in the epoll set: written once, to stop the thread.
        private let wake: Int32
        private let state = NIOLockedValueBox(State())

        /// Starts the watcher's thread; nil when the kernel refuses an epoll or an eventfd.
        init?(name: String) {
            let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
            guard epoll >= 0 else { return nil }
            let wake = eventfd(0, Int32(EFD_CLOEXEC) | Int32(EFD_NONBLOCK))
            var event = epoll_event()
            event.events = EPOLLIN.rawValue
            event.data.u64 = PipelineWatcher.wakeID
            guard wake >= 0, epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &event) == 0 else {
                close(epoll)
                if wake >= 0 { close(wake) }
                return nil
            }
            self.epoll = epoll
            self.wake = wake
            Thread { [self] in
                // Named from inside: a name given before `start` is not applied on Linux.
                Thread.current.name = name
                watch()
            }.start()
        }

        /// Sends `statements` on `connection` (which must stay untouched until
        /// `completion` runs) and has the answers read by the watcher's thread.
        /// `completion` runs once: on that thread, or on the caller's when sending fails.
        func run(_ statements: [Statement], on connection: Connection, completion: @escaping Completion) {
            let unsent: Bool
            do {
                unsent = !(try connection.sendPipeline(statements, blocking: false))
            } catch {
                completion(.failure(error))
                return
            }
            let job = Job(connection: connection, completion: completion, unsent: unsent)
            let id = state.withLockedValue { state in
                state.lastID += 1
                state.jobs[state.lastID] = job
                return state.lastID
            }
            if !arm(connection.socket, id: id, writable: unsent) {
                finish(id, .failure(PipelineWatcher.unwatchable()))
            }
        }

        /// Stops the thread. Called once no pipeline is in flight and none can
        /// start (the pool waits for all its slots first). Only the first call
        /// does anything: the thread closes its descriptors as it ends, and their
        /// numbers may be reused after.
        func stop() {
            let first = state.withLockedValue { state -> Bool in
                assert(state.jobs.isEmpty, "the watcher stopped with pipelines in flight")
                defer { state.stopping = true }
                return !state.stopping
            }
            guard first else { return }
            var one: UInt64 = 1
            _ = write(wake, &one, MemoryLayout<UInt64>.size)
        }

        // MARK: - The watcher's thread

        private func watch() {
            let capacity = 64
            var events = [epoll_event](repeating: epoll_event(), count: capacity)
            while true {
                let count = events.withUnsafeMutableBufferPointer { epoll_wait(epoll, $0.baseAddress, Int32(capacity), -1) }
                if count < 0 {
                    guard errno == EINTR else { preconditionFailure("epoll_wait failed (errno \(errno))") }
                    continue
                }
                for event in events[0..<Int(count)] {
                    let id = event.data.u64
                    if id == PipelineWatcher.wakeID {
                        guard state.withLockedValue({ $0.stopping }) else { continue }
                        close(wake)
                        close(epoll)
                        return
                    }
                    // An event of a job already finished finds nothing.
                    guard let job = state.withLockedValue({ $0.jobs[id] }) else { continue }
                    advance(job, id: id)
                }
            }
        }

        /// Sends what is left, reads what arrived, and finishes the job or arms its socket again.
        private func advance(_ job: Job, id: UInt64) {
            do {
                if job.unsent {
                    job.unsent = !(try job.connection.flushPipeline())
                }
                if let results = try job.connection.readPipeline(blocking: false) {
                    finish(id, .success(results))
                } else if !arm(job.connection.socket, id: id, writable: job.unsent) {
                    // The connection stays in pipeline mode: the pool discards it.
                    finish(id, .failure(PipelineWatcher.unwatchable()))
                }
            } catch {
                finish(id, .failure(error))
            }
        }

        private func finish(_ id: UInt64, _ outcome: Result<[QueryResult], any Error>) {
            // Removed before the completion hands the connection on: its next
            // pipeline may then start at once, on another thread.
            guard let job = state.withLockedValue({ $0.jobs.removeValue(forKey: id) }) else { return }
            job.completion(outcome)
        }

        /// The error of a job whose socket `arm` refused (read right after it, while `errno` is its).
        private static func unwatchable() -> PostgresError {
            PostgresError(kind: .connection, message: "could not watch the connection's socket (errno \(errno))")
        }

        /// Arms the socket for one event of job `id`: readable, and writable too
        /// when part of the pipeline is unsent.
        private func arm(_ socket: Int32, id: UInt64, writable: Bool) -> Bool {
            guard socket >= 0 else { return false }
            var event = epoll_event()
            event.events = EPOLLIN.rawValue | EPOLLONESHOT.rawValue | (writable ? EPOLLOUT.rawValue : 0)
            event.data.u64 = id
            if epoll_ctl(epoll, EPOLL_CTL_MOD, socket, &event) == 0 { return true }
            // A socket the set has not seen yet (a new connection, or one whose
            // number was reused after the old connection closed).
            return errno == ENOENT && epoll_ctl(epoll, EPOLL_CTL_ADD, socket, &event) == 0
        }
    }
#endif
