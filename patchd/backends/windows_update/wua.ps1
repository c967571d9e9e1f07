<#
.SYNOPSIS
    patchd's bridge to the Windows Update Agent (WUA) COM API. Prints one JSON document.

.DESCRIPTION
    Run by patchd as
        powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File wua.ps1 -Action ACTION [-Updates ID:REV,...]
    Actions:
      probe         the agent's version and whether the API answers
      search        updates not installed: IsInstalled=0 and Type='Software' and IsHidden=0
      installed     updates installed, and those installed but waiting for a restart
      install       download and install the named updates (UpdateID:RevisionNumber,...)
      uninstall     uninstall the named updates (only those with IsUninstallable)
      reboot-state  whether a restart is pending, and which signals say so
    Output is UTF-8 JSON on standard output; any failure prints {"error": ...} and exits 1.
    Runs in Windows PowerShell 5.1 (the COM objects need no module). The WUA API must run
    in the local session (the agent runs as SYSTEM); it refuses remote (WinRM) tokens.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateSet('probe', 'search', 'installed', 'install', 'uninstall', 'reboot-state')]
    [string] $Action,

    [string] $Updates = ''
)

$ErrorActionPreference = 'Stop'
[Console]::OutputEncoding = [System.Text.Encoding]::UTF8

function ConvertTo-PatchdUpdate($update) {
    $categories = @()
    foreach ($c in $update.Categories) {
        $categories += [ordered]@{ id = [string]$c.CategoryID; name = [string]$c.Name; type = [string]$c.Type }
    }
    [ordered]@{
        updateId         = [string]$update.Identity.UpdateID
        revision         = [int]$update.Identity.RevisionNumber
        title            = [string]$update.Title
        kb               = @($update.KBArticleIDs | ForEach-Object { 'KB' + $_ })
        msrcSeverity     = [string]$update.MsrcSeverity
        categories       = $categories
        cveIds           = @($update.CveIDs | ForEach-Object { [string]$_ })
        rebootBehavior   = [int]$update.InstallationBehavior.RebootBehavior
        rebootRequired   = [bool]$update.RebootRequired
        isUninstallable  = [bool]$update.IsUninstallable
        isInstalled      = [bool]$update.IsInstalled
        isDownloaded     = [bool]$update.IsDownloaded
        maxDownloadSize  = [long]$update.MaxDownloadSize
    }
}

function Search-Updates([string] $criteria) {
    $session = New-Object -ComObject Microsoft.Update.Session
    $session.ClientApplicationID = 'patchd'
    $searcher = $session.CreateUpdateSearcher()
    return $searcher.Search($criteria).Updates
}

function Get-NamedUpdates([string] $names, [string] $installed) {
    $found = New-Object -ComObject Microsoft.Update.UpdateColl
    $missing = @()
    foreach ($name in ($names -split ',')) {
        if ($name -notmatch '^([0-9a-fA-F-]{36}):(\d+)$') { throw "not an update id: $name" }
        $criteria = "IsInstalled=$installed and UpdateID='$($Matches[1])' and RevisionNumber=$($Matches[2])"
        $matched = Search-Updates $criteria
        if ($matched.Count -eq 0) { $missing += $name } else { [void]$found.Add($matched.Item(0)) }
    }
    return @{ Updates = $found; Missing = $missing }
}

function Get-RebootState {
    $reasons = @()
    $keys = @(
        'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired',
        'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending'
    )
    foreach ($key in $keys) { if (Test-Path $key) { $reasons += $key } }
    $sessionManager = Get-ItemProperty 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager' -ErrorAction SilentlyContinue
    if ($sessionManager -and $sessionManager.PendingFileRenameOperations) {
        $reasons += 'PendingFileRenameOperations'
    }
    $systemInfo = New-Object -ComObject Microsoft.Update.SystemInfo
    if ($systemInfo.RebootRequired) { $reasons += 'ISystemInformation.RebootRequired' }
    return [ordered]@{ rebootRequired = ($reasons.Count -gt 0); reasons = $reasons }
}

function Invoke-Operation($named, [bool] $uninstall) {
    $session = New-Object -ComObject Microsoft.Update.Session
    $session.ClientApplicationID = 'patchd'
    $updates = $named.Updates
    $refused = @()
    if ($uninstall) {
        $removable = New-Object -ComObject Microsoft.Update.UpdateColl
        foreach ($u in $updates) {
            if ($u.IsUninstallable) { [void]$removable.Add($u) } else { $refused += [string]$u.Identity.UpdateID }
        }
        $updates = $removable
    } else {
        foreach ($u in $updates) { if (-not $u.EulaAccepted) { $u.AcceptEula() } }
        if ($updates.Count -gt 0) {
            $downloader = $session.CreateUpdateDownloader()
            $downloader.Updates = $updates
            [void]$downloader.Download()
        }
    }
    $result = [ordered]@{ resultCode = 0; hresult = 0; rebootRequired = $false; updates = @(); missing = $named.Missing; refused = $refused }
    if ($updates.Count -eq 0) { return $result }
    $installer = $session.CreateUpdateInstaller()
    $installer.Updates = $updates
    if ($uninstall) { $outcome = $installer.Uninstall() } else { $outcome = $installer.Install() }
    $result.resultCode = [int]$outcome.ResultCode
    $result.hresult = [int]$outcome.HResult
    $result.rebootRequired = [bool]$outcome.RebootRequired
    for ($i = 0; $i -lt $updates.Count; $i++) {
        $one = $outcome.GetUpdateResult($i)
        $result.updates += [ordered]@{
            updateId       = [string]$updates.Item($i).Identity.UpdateID
            revision       = [int]$updates.Item($i).Identity.RevisionNumber
            resultCode     = [int]$one.ResultCode
            hresult        = [int]$one.HResult
            rebootRequired = [bool]$one.RebootRequired
        }
    }
    return $result
}

try {
    switch ($Action) {
        'probe' {
            $agent = New-Object -ComObject Microsoft.Update.AgentInfo
            $out = [ordered]@{ agentVersion = [string]$agent.GetInfo('ProductVersionString') }
        }
        'search' {
            $out = [ordered]@{ updates = @(Search-Updates "IsInstalled=0 and Type='Software' and IsHidden=0" | ForEach-Object { ConvertTo-PatchdUpdate $_ }) }
        }
        'installed' {
            $done = @(Search-Updates "IsInstalled=1 and Type='Software'" | ForEach-Object { ConvertTo-PatchdUpdate $_ })
            $waiting = @(Search-Updates "IsInstalled=0 and Type='Software' and RebootRequired=1" | ForEach-Object { ConvertTo-PatchdUpdate $_ })
            $out = [ordered]@{ updates = $done + $waiting }
        }
        'install' { $out = Invoke-Operation (Get-NamedUpdates $Updates '0') $false }
        'uninstall' { $out = Invoke-Operation (Get-NamedUpdates $Updates '1') $true }
        'reboot-state' { $out = Get-RebootState }
    }
    $out | ConvertTo-Json -Depth 6 -Compress
    exit 0
} catch {
    [ordered]@{ error = [string]$_.Exception.Message; hresult = [int]$_.Exception.HResult } | ConvertTo-Json -Compress
    exit 1
}
