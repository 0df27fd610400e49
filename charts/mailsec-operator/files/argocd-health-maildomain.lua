-- Argo CD health check for mailsec.io/v1alpha1 MailDomain: the value of
-- `resource.customizations.health.mailsec.io_MailDomain` in argocd-cm (README: GitOps health).
-- The same verdict as kstatus, the health Flux reads, from the same fields:
--   Healthy     = Current:    Ready=True for the current generation
--   Progressing = InProgress: no status yet, a generation not observed yet, Reconciling=True,
--                             or Ready not True
--   Degraded    = Failed:     Stalled=True (an error only the user can fix)
-- Lua 5.1 as Argo CD runs it (gopher-lua): no goto, no //, no bitwise operators.
local hs = {}

local function find(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.type .. " " .. tostring(c.reason or "")
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Pending deletion: the records are withdrawn first"
  return hs
end

local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller's first status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Generation " .. tostring(generation) .. " not observed yet (status is for generation "
    .. tostring(status.observedGeneration) .. ")"
  return hs
end

local conditions = status.conditions or {}
-- First Reconciling=True or Stalled=True in list order, as kstatus reads them.
for _, c in ipairs(conditions) do
  if c.status == "True" and c.type == "Reconciling" then
    hs.status = "Progressing"
    hs.message = tostring(c.reason or "") .. ": " .. tostring(c.message or "")
    return hs
  end
  if c.status == "True" and c.type == "Stalled" then
    hs.status = "Degraded"
    hs.message = tostring(c.reason or "") .. ": " .. tostring(c.message or "")
    return hs
  end
end

local ready = find(conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  local enforced = find(conditions, "Enforced")
  if enforced ~= nil and enforced.status == "False" then
    hs.message = hs.message .. "; " .. describe(enforced)
  end
  return hs
end
hs.status = "Progressing"
hs.message = describe(ready)
return hs
