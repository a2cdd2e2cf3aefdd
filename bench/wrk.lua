-- The wrk script behind every scenario of bench/run.sh.
--
--   wrk -t THREADS -c CONNS -d MAX --timeout 30s -s bench/wrk.lua URL -- FILE MODE THREADS [EXPECTED]
--
-- FILE holds one request a line: an extra header line ("Name: value", or
-- nothing), a tab, and the body, POSTed as JSON to URL's path.
--   MODE "once":  every line is sent exactly once, the lines shared out
--                 between the threads; a thread stops when all its answers
--                 are in, and prints "bench: thread finished" on stderr so
--                 that run.sh can end wrk's wait early.
--   MODE "cycle": the lines are sent round and round until wrk's -d ends.
-- EXPECTED names a GraphQL error code that is an expected answer in this
-- scenario (SOLD_OUT in the booking rush): it is counted apart, not as an
-- error.
--
-- An error is a non-2xx answer or a 2xx whose body holds "errors". Short
-- plain-text bodies (the webhook's "applied", "duplicate", ...) are tallied.
--
-- The script times each request itself, from the moment wrk asks for it to
-- the moment its answer is parsed, matched by the x-request-id header the
-- server sends back. Two reasons: wrk's own percentiles are "corrected" for
-- coordinated omission (synthetic samples are added), and its requests per
-- second divide by the whole -d duration, which is wrong when "once" ends
-- early. Rates here are answers / (last answer - first request).

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("bench_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end

-- Main state: the threads, to collect their counts in done().
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Thread state.
local items = {}
local starts = {}
-- Globals, so that done() can read them: thread:get reads globals only.
mode, expected = nil, nil
reserved, taken, offset = 0, 0, 0

-- Counted in the thread, read by done() through thread:get.
lat = {}
answers, errors, expected_n, non2xx, unmatched = 0, 0, 0, 0, 0
first_start, last_end = nil, nil
outcomes = {}
sample_error = nil

function init(args)
  -- args[0] is the URL; what follows `--` comes after it.
  local file, nthreads = args[1], tonumber(args[3])
  mode, expected = args[2], args[4]
  local n = 0
  for line in io.lines(file) do
    if mode ~= "once" or n % nthreads == id then
      local header, body = line:match("^([^\t]*)\t(.*)$")
      local headers = { ["Content-Type"] = "application/json" }
      local name, value = header:match("^([^:]+):%s*(.*)$")
      if name then
        headers[name] = value
      end
      local raw = wrk.format("POST", wrk.path, headers, body)
      local eol = raw:find("\r\n", 1, true)
      table.insert(items, { head = raw:sub(1, eol - 1), rest = raw:sub(eol) })
    end
    n = n + 1
  end
  -- Threads start at different places in a cycled list.
  offset = (mode == "once") and 0 or (id * math.floor(#items / nthreads))
end

-- Called before every request: in "once" mode it holds back a connection
-- for an hour once the thread's lines are all given out.
function delay()
  if mode == "once" and reserved >= #items then
    return 3600000
  end
  reserved = reserved + 1
  return 0
end

function request()
  -- wrk calls request() once on its own before the run, to check the
  -- request parses; that call reserved nothing and sends nothing.
  if taken >= reserved or #items == 0 then
    local item = items[1]
    return item.head .. item.rest
  end
  taken = taken + 1
  local item = items[(offset + taken - 1) % #items + 1]
  local rid = "b" .. id .. "-" .. taken
  local t = now_us()
  starts[rid] = t
  if first_start == nil then
    first_start = t
  end
  return item.head .. "\r\nx-request-id: " .. rid .. item.rest
end

function response(status, headers, body)
  local t = now_us()
  answers = answers + 1
  last_end = t

  local rid = headers["x-request-id"] or headers["X-Request-Id"]
  local started = rid and starts[rid]
  if started then
    lat[#lat + 1] = t - started
    starts[rid] = nil
  else
    unmatched = unmatched + 1
  end

  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    errors = errors + 1
    sample_error = sample_error or (status .. " " .. body:sub(1, 300))
  elseif body:find('"errors"', 1, true) then
    if expected and body:find('"' .. expected .. '"', 1, true) then
      expected_n = expected_n + 1
    else
      errors = errors + 1
      sample_error = sample_error or (status .. " " .. body:sub(1, 300))
    end
  end
  if #body > 0 and #body < 32 and body:sub(1, 1) ~= "{" then
    outcomes[body] = (outcomes[body] or 0) + 1
  end

  if mode == "once" and answers >= #items then
    io.stderr:write("bench: thread finished\n")
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local all = {}
  local total, errs, exp, bad, lost, sent = 0, 0, 0, 0, 0, 0
  local first, last
  local tally = {}
  local sample
  for _, thread in ipairs(threads) do
    for _, v in ipairs(thread:get("lat")) do
      all[#all + 1] = v
    end
    total = total + thread:get("answers")
    errs = errs + thread:get("errors")
    exp = exp + thread:get("expected_n")
    bad = bad + thread:get("non2xx")
    lost = lost + thread:get("unmatched")
    sent = sent + thread:get("taken")
    local f, l = thread:get("first_start"), thread:get("last_end")
    if f and (first == nil or f < first) then first = f end
    if l and (last == nil or l > last) then last = l end
    for k, v in pairs(thread:get("outcomes")) do
      tally[k] = (tally[k] or 0) + v
    end
    sample = sample or thread:get("sample_error")
  end
  table.sort(all)
  local function pct(p)
    if #all == 0 then return 0 end
    return all[math.max(1, math.ceil(#all * p))] / 1000
  end
  local seconds = (first and last and last > first) and (last - first) / 1000000 or 0
  local rate = seconds > 0 and total / seconds or 0
  local socket = summary.errors.connect + summary.errors.read + summary.errors.write
  -- In "once" mode a request that never got an answer is an error too (in
  -- "cycle" mode the requests in flight when the time is up are not).
  local once = threads[1] and threads[1]:get("mode") == "once"
  local missing = (once and sent > total) and (sent - total) or 0
  local names = {}
  for k, v in pairs(tally) do
    names[#names + 1] = k .. ":" .. v
  end
  table.sort(names)
  io.write(string.format(
    "BENCH answers=%d sent=%d seconds=%.3f rps=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%d expected=%d non2xx=%d socket_errors=%d missing=%d unmatched=%d outcomes=%s\n",
    total, sent, seconds, rate, pct(0.50), pct(0.99), pct(1.0), errs + socket + missing, exp, bad, socket,
    missing, lost, table.concat(names, ",")))
  if sample then
    io.write("BENCH first error: " .. sample:gsub("\n", " ") .. "\n")
  end
end
