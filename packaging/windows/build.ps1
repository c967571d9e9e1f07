<#
.SYNOPSIS
Build the patchd agent's Windows installer (an MSI) on Windows with WiX Toolset v5.

.DESCRIPTION
Stages python.org's embeddable Python (pinned in packaging\python-pins by version and
SHA-256) under python\, installs patchd and its dependencies (pywin32 for the service
host) into python\Lib\site-packages, and builds packaging\windows\patchd.wxs with
`wix build`. The MSI installs C:\Program Files\patchd, %ProgramData%\patchd and the
service patchd-agent (docs\install.md, "Windows installer").

Needs: Windows x64, PowerShell 5.1+, a CPython 3.12 x64 for pip (the `py` launcher),
the .NET SDK's `wix` tool 5.x (`dotnet tool install --global wix --version 5.0.2`) and,
to sign, signtool.exe from the Windows SDK with a code-signing certificate in the store.

A recipe: it has not been run (patchd is developed on Linux). tests/packaging checks the
.wxs and this script's agreement with patchd.service.windows.

.PARAMETER Requirements
patchd's dependencies with hashes (pip-compile --generate-hashes on Windows, reviewed
like code; it must list pywin32). pip installs only wheels whose hash matches.

.PARAMETER CertificateThumbprint
SHA-1 thumbprint of the Authenticode certificate that signs the MSI. Without it,
-Unsigned must be given: an unsigned MSI for testing only.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)] [string] $Requirements,
    [string] $Out = (Join-Path $PSScriptRoot '..\..\dist'),
    [string] $CertificateThumbprint = '',
    [switch] $Unsigned,
    [string] $TimestampUrl = 'http://timestamp.digicert.com'
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$WixUtilExtension = 'WixToolset.Util.wixext/5.0.2'
$MaxDownloadSeconds = 600

function Fail([string] $Message) {
    Write-Error "build.ps1: $Message" -ErrorAction Continue
    exit 1
}

# Run a program with an argument list; stop on a non-zero exit status.
function Invoke-Checked([string] $Program, [string[]] $Arguments) {
    & $Program @Arguments
    if ($LASTEXITCODE -ne 0) { Fail "$Program $($Arguments -join ' ') exited with $LASTEXITCODE" }
}

if (-not $Unsigned -and -not $CertificateThumbprint) {
    Fail 'give -CertificateThumbprint to sign the MSI, or -Unsigned for a test build'
}
if (-not (Test-Path -LiteralPath $Requirements -PathType Leaf)) {
    Fail "no requirements file at $Requirements (pip-compile --generate-hashes)"
}
if (-not (Select-String -LiteralPath $Requirements -Pattern '^pywin32==' -Quiet)) {
    Fail "$Requirements does not pin pywin32, which the service host needs"
}

$Repo = (Resolve-Path (Join-Path $PSScriptRoot '..\..')).Path
$Pin = Get-Content (Join-Path $Repo 'packaging\python-pins') |
    Where-Object { $_ -match '^windows-amd64\s' } | Select-Object -First 1
if (-not $Pin) { Fail 'no Python pinned for windows-amd64 in packaging\python-pins' }
$PythonVersion, $PythonUrl, $PythonSha256 = ($Pin -split '\s+')[1..3]
$Tag = 'python' + (($PythonVersion -split '\.')[0..1] -join '')   # python312

$Work = Join-Path ([IO.Path]::GetTempPath()) ("patchd-msi-" + [Guid]::NewGuid())
$Stage = Join-Path $Work 'stage'
$PythonDir = Join-Path $Stage 'python'
$Site = Join-Path $PythonDir 'Lib\site-packages'
New-Item -ItemType Directory -Force -Path $Site, $Out | Out-Null
try {
    Write-Host "== Python $PythonVersion (embeddable, amd64)"
    $Zip = Join-Path $Work 'python.zip'
    Invoke-WebRequest -Uri $PythonUrl -OutFile $Zip -UseBasicParsing -TimeoutSec $MaxDownloadSeconds
    $Actual = (Get-FileHash -LiteralPath $Zip -Algorithm SHA256).Hash.ToLowerInvariant()
    if ($Actual -ne $PythonSha256) { Fail "$PythonUrl has SHA-256 $Actual, not the pinned $PythonSha256" }
    Expand-Archive -LiteralPath $Zip -DestinationPath $PythonDir
    # The embeddable Python reads sys.path only from this file. Lib\site-packages plus
    # `import site` let pywin32.pth put pywin32's DLL directory on the search path.
    Set-Content -LiteralPath (Join-Path $PythonDir "$Tag._pth") -Encoding Ascii -Value @(
        "$Tag.zip", '.', 'Lib\site-packages', 'import site')

    Write-Host '== patchd and its dependencies'
    $Wheels = Join-Path $Work 'wheel'
    Invoke-Checked 'py' @('-3.12', '-m', 'pip', 'wheel', '--quiet', '--no-deps', '--wheel-dir', $Wheels, $Repo)
    $PipTarget = @('-3.12', '-m', 'pip', 'install', '--quiet', '--no-cache-dir', '--disable-pip-version-check',
        '--target', $Site, '--only-binary=:all:', '--platform', 'win_amd64',
        '--python-version', $PythonVersion, '--implementation', 'cp')
    Invoke-Checked 'py' ($PipTarget + @('--require-hashes', '--requirement', $Requirements))
    $Wheel = (Get-ChildItem -LiteralPath $Wheels -Filter 'patchd-*.whl' | Select-Object -First 1).FullName
    Invoke-Checked 'py' ($PipTarget + @('--no-index', '--no-deps', $Wheel))

    $Python = Join-Path $PythonDir 'python.exe'
    Invoke-Checked $Python @('-m', 'patchd', '--version')
    Invoke-Checked $Python @('-c', 'import servicemanager, win32service, win32serviceutil')
    $Version = & $Python -c 'import patchd, sys; sys.stdout.write(patchd.__version__)'
    $MsiVersion = ([regex]::Match($Version, '^\d+(\.\d+){0,2}')).Value   # MSI: numbers only

    Set-Content -LiteralPath (Join-Path $Stage 'patchd.cmd') -Encoding Ascii -Value @(
        '@"%~dp0python\python.exe" -m patchd %*')
    Copy-Item -LiteralPath (Join-Path $Site 'patchd\service\files\agent.yaml') -Destination $Stage

    $WaitStop = Get-Content -LiteralPath (Join-Path $PSScriptRoot 'wait-agent-stop.ps1') -Raw
    $WaitStopCommand = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($WaitStop))

    Write-Host "== wix build ($MsiVersion)"
    $Msi = Join-Path $Out "patchd-$Version-x64.msi"
    Invoke-Checked 'wix' @('extension', 'add', '--global', $WixUtilExtension)
    Invoke-Checked 'wix' @('build', '-arch', 'x64', '-ext', 'WixToolset.Util.wixext',
        '-d', "Version=$MsiVersion", '-d', "StageDir=$Stage", '-d', "WaitStopCommand=$WaitStopCommand",
        '-o', $Msi, (Join-Path $PSScriptRoot 'patchd.wxs'))

    if ($Unsigned) {
        Write-Host "unsigned test MSI: $Msi"
        exit 0
    }
    Write-Host '== signtool'
    Invoke-Checked 'signtool' @('sign', '/sha1', $CertificateThumbprint, '/fd', 'SHA256',
        '/tr', $TimestampUrl, '/td', 'SHA256', '/d', 'patchd agent', $Msi)
    Invoke-Checked 'signtool' @('verify', '/pa', '/v', $Msi)
    Write-Host "signed MSI: $Msi"
} finally {
    Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue
}
