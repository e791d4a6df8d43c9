-- Ferry lb: holds new requests of a frozen service at the entry point.
-- Called as `lua.ferry_hold <backend> <max wait ms> <max queue>` only while
-- proc.ferry_hold_<backend> is set; returns as soon as it is cleared (runtime API:
-- `experimental-mode on; set var proc.ferry_hold_<backend> int(0)`) or the wait runs out.
-- Its verdict goes to txn.ferry_hold: released | timeout | full | error (the config answers
-- 503 / rejects on full). core.msleep yields, so sleeping does not count against
-- tune.lua.session-timeout.

-- backend -> { token -> deadline (ms) }. A client that disconnects while held kills this coroutine
-- without any cleanup, so entries are counted only until their deadline: a leak cannot outlive one wait.
local waiting = {}
local seq = 0

local function now_ms()
  local t = core.now()
  return t.sec * 1000 + t.usec / 1000
end

local function live(backend, now)
  local set = waiting[backend]
  if set == nil then
    set = {}
    waiting[backend] = set
  end
  local n = 0
  for token, deadline in pairs(set) do
    if deadline <= now then set[token] = nil else n = n + 1 end
  end
  return set, n
end

core.register_action("ferry_hold", { "http-req", "tcp-req" }, function(txn, backend, max_wait, max_queue)
  local flag = "proc.ferry_hold_" .. backend
  local count = "proc.ferry_held_" .. backend
  local t0 = now_ms()
  local deadline = t0 + tonumber(max_wait)
  local set, n = live(backend, t0)
  if n >= tonumber(max_queue) then
    txn:set_var("txn.ferry_hold", "full")
    return
  end
  seq = seq + 1
  local token = seq
  set[token] = deadline
  txn:set_var(count, n + 1)
  local verdict = "released"
  local ok = pcall(function()
    while (txn:get_var(flag) or 0) > 0 do
      if now_ms() >= deadline then
        verdict = "timeout"
        return
      end
      core.msleep(5)
    end
  end)
  set[token] = nil
  local _, left = live(backend, now_ms())
  txn:set_var(count, left)
  txn:set_var("txn.ferry_hold", ok and verdict or "error")
end, 3)
