# Run by the installer before an upgrade or an uninstall changes any file (custom action
# WaitForAgentStop in patchd.wxs, passed as -EncodedCommand by build.ps1). Asks the service
# to stop and waits, as systemd's stop does: the service host sends the agent CTRL_BREAK
# and the agent stops at its next safe step, never inside a package transaction, so this
# waits up to the service's stop budget (patchd.service.windows.STOP_WAIT_HINT_S). A
# non-zero exit fails the installation before it has changed anything.
$ErrorActionPreference = 'Stop'
$service = Get-Service -Name 'patchd-agent' -ErrorAction SilentlyContinue
if ($null -eq $service -or $service.Status -eq 'Stopped') { exit 0 }
# A self-upgrade (the agent running this installer as its package transaction) would wait
# for itself: refuse it at once rather than after the whole stop budget.
$hostPid = (Get-CimInstance Win32_Service -Filter "Name='patchd-agent'").ProcessId
$processes = @(Get-CimInstance Win32_Process | Select-Object ProcessId, ParentProcessId, Name)
$below = @{ [int]$hostPid = $true }
do {
    $grew = $false
    foreach ($p in $processes) {
        if (-not $below.ContainsKey([int]$p.ProcessId) -and $below.ContainsKey([int]$p.ParentProcessId)) {
            $below[[int]$p.ProcessId] = $true; $grew = $true
        }
    }
} while ($grew)
$selfUpgrade = $processes | Where-Object { $_.Name -eq 'msiexec.exe' -and $below.ContainsKey([int]$_.ProcessId) }
if ($hostPid -and $selfUpgrade) {
    Write-Error "patchd-agent is running this installation itself; start the upgrade detached from the agent (a scheduled task)"
    exit 1
}
if ($service.Status -ne 'StopPending') { $service.Stop() }
try {
    $service.WaitForStatus('Stopped', (New-TimeSpan -Seconds 10800))
} catch {
    Write-Error "patchd-agent did not stop within 10800 s; is a package transaction stuck?"
    exit 1
}
exit 0
