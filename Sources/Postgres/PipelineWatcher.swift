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
    /// Pipelines of several callers may be in flight on one connection
    /// (`Channel`): PostgreSQL then runs them back to back, without waiting for
    /// the next one's round trip, and one read may bring several answers.
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

        /// The failure of a pipeline handed to a channel that was abandoned
        /// meanwhile: nothing of it was sent.
        struct NotSent: Error {}

        /// A connection lent to pipelines, from its first pipeline until the
        /// pool takes it back (`forget`). Several pipelines may be in flight on
        /// it: each is sent by its caller after those already there, and their
        /// completions run in the order they were sent.
        final class Channel: @unchecked Sendable {
            let connection: Connection
            fileprivate let id: UInt64
            fileprivate let lock = NIOLock()
            /// Under `lock`: one per pipeline in flight, oldest first.
            fileprivate var completions: [Completion] = []
            /// Under `lock`: part of a pipeline is still in libpq's buffer, to
            /// send when the socket is writable.
            fileprivate var unsent = false
            /// Under `lock`: the pipelines in flight were failed all at once;
            /// nothing more is sent here.
            fileprivate var abandoned = false
            /// Under `lock`: the socket was armed and the watcher has not yet
            /// begun to read for it (`advance`); true with the writable flag
            /// when that was armed too. Its event is still to come, or came
            /// and `advance` will read every pipeline handed over before it
            /// takes the lock: a pipeline sent meanwhile need not arm again.
            fileprivate var armed: (readable: Bool, writable: Bool) = (false, false)
            /// Under the pool's lock: when each pipeline in flight was
            /// handed to the channel, oldest first. The pool counts them to
            /// decide who may send here and when the connection goes back
            /// to its slots, and does not send behind one that is taking long.
            var started: [ContinuousClock.Instant] = []
            /// Under the pool's lock: the connection broke, or its prepared
            /// statements no longer fit the schema. No further pipeline is sent
            /// here, and the connection is closed after the last one.
            var discard = false

            fileprivate init(connection: Connection, id: UInt64) {
                self.connection = connection
                self.id = id
            }

            /// Whether the channel's pipelines were failed all at once (the
            /// connection broke, or could not be watched): its connection
            /// must not be used again.
            var isAbandoned: Bool { lock.withLock { abandoned } }

            /// Fails every pipeline in flight with `error`, gives up their
            /// answers, and takes no more. Under `lock`; the completions are
            /// the caller's to run after it.
            fileprivate func abandon() -> [Completion] {
                abandoned = true
                connection.abandonPipelines()
                defer { completions = [] }
                return completions
            }
        }

        private struct State {
            /// Channels by an id never used twice (the epoll event's data).
            /// Not by socket: libpq closes a broken connection's socket while
            /// its pipelines are still being failed, and a new connection may
            /// get the same number at once.
            var channels: [UInt64: Channel] = [:]
            var lastID: UInt64 = 0
            var stopping = false
        }

        /// The eventfd's id in the epoll set; channels count up from 1.
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

        /// A channel for `connection`, which the watcher then uses until `forget`.
        func channel(for connection: Connection) -> Channel {
            state.withLockedValue { state in
                state.lastID += 1
                let channel = Channel(connection: connection, id: state.lastID)
                state.channels[state.lastID] = channel
                return channel
            }
        }

        /// Drops a channel whose pipelines have all completed. Its connection
        /// is the caller's again; a late event of its socket finds nothing.
        func forget(_ channel: Channel) {
            _ = state.withLockedValue { $0.channels.removeValue(forKey: channel.id) }
        }

        /// Sends `statements` on the channel's connection, after the pipelines
        /// already in flight there, and has the answers read by the watcher's
        /// thread. `completion` runs once: on that thread, or on the caller's
        /// when sending fails. A statement's parameter refused before anything
        /// is sent fails only this pipeline. A channel already abandoned
        /// fails it with `NotSent`. Any other failure to send abandons the
        /// channel: every pipeline in flight on it fails, and the connection
        /// is out of use (part of this pipeline may wait in libpq, with no
        /// synchronization point to end it).
        func run(_ statements: [Statement], on channel: Channel, completion: @escaping Completion) {
            do {
                try Connection.check(statements)
            } catch {
                completion(.failure(error))
                return
            }
            var failed: [Completion] = []
            var failure: (any Error)?
            channel.lock.withLock {
                guard !channel.abandoned else {
                    failure = NotSent()
                    failed = [completion]
                    return
                }
                do {
                    let sent = try channel.connection.sendPipeline(statements, blocking: false, checked: true)
                    channel.completions.append(completion)
                    channel.unsent = channel.unsent || !sent
                    let writable = channel.unsent || channel.connection.hasAnswerBuffered
                    // Armed already as this needs: the watcher reads this
                    // pipeline with the ones before it.
                    if channel.armed.readable && (channel.armed.writable || !writable) { return }
                    if !arm(channel, answerBuffered: channel.connection.hasAnswerBuffered) {
                        failure = PipelineWatcher.unwatchable()
                        failed = channel.abandon()
                    }
                } catch {
                    failure = error
                    failed = channel.abandon() + [completion]
                }
            }
            if let failure {
                for completion in failed { completion(.failure(failure)) }
            }
        }

        /// Stops the thread. Called once no pipeline is in flight and none can
        /// start (the pool waits for all its slots first). Only the first call
        /// does anything: the thread closes its descriptors as it ends, and their
        /// numbers may be reused after.
        func stop() {
            let first = state.withLockedValue { state -> Bool in
                assert(state.channels.isEmpty, "the watcher stopped with pipelines in flight")
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
                    // An event of a channel already forgotten finds nothing.
                    guard let channel = state.withLockedValue({ $0.channels[id] }) else { continue }
                    advance(channel)
                }
            }
        }

        /// Sends what is left, reads every pipeline whose answers have all
        /// arrived, and arms the socket again while any is still in flight. The
        /// completions run after the channel's lock is let go, in order.
        private func advance(_ channel: Channel) {
            var done: [(Completion, Result<[QueryResult], any Error>)] = []
            channel.lock.withLock {
                // A late event: the connection may be another caller's by now.
                guard !channel.completions.isEmpty else { return }
                // The event came (one shot): a pipeline sent from here on arms again.
                channel.armed = (false, false)
                let connection = channel.connection
                do {
                    if channel.unsent {
                        channel.unsent = !(try connection.flushPipeline())
                    }
                    // The socket is read once; the answers of the pipelines
                    // after the first are mostly in that read, and when they
                    // are not, arming below wakes the watcher as they come.
                    var reading = true
                    while !channel.completions.isEmpty {
                        let results: [QueryResult]
                        defer { reading = false }
                        do {
                            guard let read = try connection.readPipeline(blocking: false, reading: reading) else { break }
                            results = read
                        } catch let error as PostgresError
                            where error.kind == .server && connection.pipelinesInFlight == channel.completions.count - 1
                        {
                            // A statement's error: it ends this pipeline only. (A
                            // broken connection, a refused COPY or an answer out of
                            // order ends every pipeline on it, below, even when this
                            // was the only one: the channel is abandoned at once, so
                            // that no pipeline joins it in the meantime.)
                            done.append((channel.completions.removeFirst(), .failure(error)))
                            continue
                        }
                        done.append((channel.completions.removeFirst(), .success(results)))
                    }
                    // The read above stopped for want of an answer: none is buffered.
                    if !channel.completions.isEmpty, !arm(channel, answerBuffered: false) {
                        let error = PipelineWatcher.unwatchable()
                        done += channel.abandon().map { ($0, .failure(error)) }
                    }
                } catch {
                    // The connection broke or answered out of order: every
                    // pipeline in flight on it fails.
                    done += channel.abandon().map { ($0, .failure(error)) }
                }
            }
            for (completion, outcome) in done { completion(outcome) }
        }

        /// The error of a channel whose socket `arm` refused (read right after it, while `errno` is its).
        private static func unwatchable() -> PostgresError {
            PostgresError(kind: .connection, message: "could not watch the connection's socket (errno \(errno))")
        }

        /// Arms the channel's socket for one event: readable, and writable too
        /// when part of a pipeline is unsent, or when libpq already holds an
        /// answer (`answerBuffered`: a writable socket then wakes the watcher
        /// at once). Under the channel's lock.
        private func arm(_ channel: Channel, answerBuffered: Bool) -> Bool {
            let socket = channel.connection.socket
            guard socket >= 0 else { return false }
            let writable = channel.unsent || answerBuffered
            var event = epoll_event()
            event.events = EPOLLIN.rawValue | EPOLLONESHOT.rawValue | (writable ? EPOLLOUT.rawValue : 0)
            event.data.u64 = channel.id
            // A socket the set has not seen yet (a new connection, or one whose
            // number was reused after the old connection closed) is added.
            guard
                epoll_ctl(epoll, EPOLL_CTL_MOD, socket, &event) == 0
                    || (errno == ENOENT && epoll_ctl(epoll, EPOLL_CTL_ADD, socket, &event) == 0)
            else { return false }
            channel.armed = (true, writable)
            return true
        }
    }
#endif
